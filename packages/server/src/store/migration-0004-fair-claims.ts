import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * What the fair claim needs (store/jobs.ts `claimJobs`): each tenant's round-robin position, and an index
 * of queued jobs that finds the tenants with queued work and each one's oldest per language and zone
 * without reading the rest of its queue.
 */
export const fairClaimsMigration: Migration = {
  name: '0004_fair_claims',
  up: async (db, dialect) => {
    // The scheduler's turn at which the tenant last got a job; the lowest goes first (never served: 0).
    // One turn per job handed out: bigint on PostgreSQL, where integer would end at 2^31.
    await db.schema
      .alterTable('tenants')
      .addColumn('last_served_turn', sql.raw(dialect === 'postgres' ? 'bigint' : 'integer'), (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('tenants_by_served_turn').on('tenants').column('last_served_turn').execute();
    // Only queued rows (a partial index: small, and the cheapest path for the planner whatever the
    // finished jobs are): the skip scan over tenants with queued work walks its `tenant_id`, then one
    // seek per (language, zone) finds a tenant's oldest. `coalesce` makes "no zone" an equality, so
    // the index also gives the order by time for unzoned jobs (PostgreSQL does not order after IS NULL).
    // Queries must spell the predicate and expression the same way (job-queue.ts).
    await sql`create index jobs_queued_by_tenant on jobs (tenant_id, language, (coalesce(zone, '')), requested_at, id)
              where status = 'queued'`.execute(db);
  },
};
