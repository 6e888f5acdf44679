import type { Migration } from './migrations.js';

/** What running jobs on a fleet adds: draining runners, the current lease's sandbox, outputs and refusals. */
export const jobFleetMigration: Migration = {
  name: '002_job_fleet',
  up: async (db) => {
    await db.schema
      .alterTable('runner_nodes')
      .addColumn('draining', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    for (const [name, type] of [
      ['sandbox_id', 'text'],
      ['stdout_inline', 'text'],
      ['stderr_inline', 'text'],
      ['rejected_artifacts', 'text'],
    ] as const) {
      await db.schema.alterTable('jobs').addColumn(name, type).execute();
    }
    // The running-job cap of the pinned policy version, frozen at submission like every other limit.
    await db.schema
      .alterTable('jobs')
      .addColumn('max_running_jobs', 'integer', (c) => c.notNull().defaultTo(20))
      .execute();
    await db.schema.createIndex('jobs_by_runner').on('jobs').columns(['runner_id', 'status']).execute();
    await db.schema.createIndex('jobs_by_tenant_status').on('jobs').columns(['tenant_id', 'status']).execute();
    await db.schema.createIndex('sandboxes_by_runner').on('sandbox_instances').columns(['runner_id', 'status']).execute();
    await db.schema.createIndex('sandboxes_by_job').on('sandbox_instances').columns(['job_id']).execute();
    await db.schema.createIndex('runner_nodes_by_name').on('runner_nodes').columns(['name']).unique().execute();
  },
};
