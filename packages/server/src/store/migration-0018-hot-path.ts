import { sql } from 'kysely';
import type { Migration } from './migrations.js';

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

    await db.schema
      .createTable('job_status_counts')
      .addColumn('status', 'text', (c) => c.primaryKey())
      .addColumn('n', 'bigint', (c) => c.notNull())
      .execute();
    await sql`insert into job_status_counts (status, n) select status, count(*) from jobs group by status`.execute(db);

    if (dialect === 'sqlite') {
      // One writer at a time: the triggers update the counts in place.
      const bump = (status: string, delta: string) =>
        `insert into job_status_counts (status, n) values (${status}, ${delta})
           on conflict (status) do update set n = n + ${delta};`;
      await sql.raw(`create trigger job_counts_insert after insert on jobs begin ${bump('new.status', '1')} end`).execute(db);
      await sql
        .raw(
          `create trigger job_counts_update after update of status on jobs when old.status <> new.status begin
             ${bump('old.status', '-1')} ${bump('new.status', '1')} end`,
        )
        .execute(db);
      await sql.raw(`create trigger job_counts_delete after delete on jobs begin ${bump('old.status', '-1')} end`).execute(db);
      return;
    }
    // Concurrent writers: the triggers only append deltas (no row is locked, so no transition waits for
    // another and none can deadlock); reading the counts folds the deltas in (foldJobStatusDeltas).
    await db.schema
      .createTable('job_status_deltas')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('delta', 'integer', (c) => c.notNull())
      .execute();
    await sql
      .raw(
        `create function kiln_job_counts() returns trigger language plpgsql as $$
         begin
           if tg_op in ('UPDATE', 'DELETE') then insert into job_status_deltas (status, delta) values (old.status, -1); end if;
           if tg_op in ('UPDATE', 'INSERT') then insert into job_status_deltas (status, delta) values (new.status, 1); end if;
           return null;
         end $$`,
      )
      .execute(db);
    await sql.raw(`create trigger job_counts_insert after insert on jobs for each row execute function kiln_job_counts()`).execute(db);
    await sql
      .raw(
        `create trigger job_counts_update after update of status on jobs for each row
           when (old.status is distinct from new.status) execute function kiln_job_counts()`,
      )
      .execute(db);
    await sql.raw(`create trigger job_counts_delete after delete on jobs for each row execute function kiln_job_counts()`).execute(db);
  },
};
