import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * Artifact storage accounting and retention (issue 7, point 3): the bytes each tenant's artifact rows
 * hold, the blob uploads not yet recorded as artifacts (so orphans are found without listing the store),
 * and the indexes the retention sweeper and the blob collector look through.
 */
export const retentionMigration: Migration = {
  name: '0006_retention',
  up: async (db, dialect) => {
    const big = dialect === 'postgres' ? 'bigint' : 'integer';
    // One row per tenant with artifacts: the sum of its artifact rows' size_bytes, kept in the same
    // transaction as every insert and delete of an artifact row (and the row locked on PostgreSQL).
    await db.schema
      .createTable('tenant_storage')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
      .addColumn('artifact_bytes', big, (c) => c.notNull().defaultTo(0))
      .execute();
    // Artifacts stored before this migration count from the start.
    await sql`insert into tenant_storage (tenant_id, artifact_bytes)
              select tenant_id, sum(size_bytes) from artifacts group by tenant_id`.execute(db);
    // A blob upload (or inline blob of a report) for a job attempt: it reserves quota while it streams
    // and until the completion records it; one that is never recorded is an orphan the collector removes.
    await db.schema
      .createTable('blob_uploads')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('attempt', 'integer', (c) => c.notNull())
      /** null while the bytes are still arriving */
      .addColumn('checksum', 'text')
      /** the bound reserved while streaming, then the stored size */
      .addColumn('size_bytes', big, (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('blob_uploads_by_tenant').on('blob_uploads').columns(['tenant_id']).execute();
    await db.schema.createIndex('blob_uploads_by_job').on('blob_uploads').columns(['job_id', 'attempt']).execute();
    await db.schema.createIndex('blob_uploads_by_checksum').on('blob_uploads').columns(['checksum']).execute();
    await db.schema.createIndex('artifacts_by_checksum').on('artifacts').columns(['checksum']).execute();
    await db.schema.createIndex('artifacts_by_created').on('artifacts').columns(['created_at']).execute();
    await db.schema.createIndex('jobs_by_completed').on('jobs').columns(['completed_at']).execute();
  },
};
