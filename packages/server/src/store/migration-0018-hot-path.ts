import type { Migration } from './migrations.js';
import { createStatusCounts } from './status-count-triggers.js';

/**
 * Issue 14 (performance): the data may grow to millions of rows without the hot path slowing down.
 *
 * - `jobs_claim_heads` (status, tenant_id, language, requested_at, id): the fair claim's walk over the
 *   tenants with queued work and its per-tenant heads are index seeks, however many jobs ended before.
 * - `jobs_by_tenant_status_id` and `jobs_by_agent`: a list filtered by status, or an agent key's own
 *   list, walks only matching rows newest first (keyset pagination on id).
 * - `audit_events_by_resource` (tenant_id, resource_id, id): one object's audit trail without a scan.
 * - `job_status_counts`: jobs by status, kept by triggers in the transaction that changes a job, so
 *   /metrics reads a handful of rows instead of counting every job ever stored.
 * - `runner_nodes.pool_stats`: the runner's warm pool as its last heartbeat reported it (for /metrics).
 */
export const hotPathMigration: Migration = {
  name: '0018_hot_path',
  up: async (db, dialect) => {
    await db.schema
      .createIndex('jobs_claim_heads')
      .on('jobs')
      .columns(['status', 'tenant_id', 'language', 'requested_at', 'id'])
      .execute();
    await db.schema.createIndex('jobs_by_tenant_status_id').on('jobs').columns(['tenant_id', 'status', 'id']).execute();
    await db.schema.createIndex('jobs_by_agent').on('jobs').columns(['agent_id', 'id']).execute();
    // The (tenant_id, status) index is a prefix of the new one: one index less to write per transition.
    await db.schema.dropIndex('jobs_by_tenant_status').execute();
    await db.schema
      .createIndex('audit_events_by_resource')
      .on('audit_events')
      .columns(['tenant_id', 'resource_id', 'id'])
      .execute();
    await db.schema.alterTable('runner_nodes').addColumn('pool_stats', 'text').execute();

    await createStatusCounts(db, dialect, 'job', 'jobs');
  },
};
