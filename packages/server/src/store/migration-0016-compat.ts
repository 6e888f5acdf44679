import type { Migration } from './migrations.js';

/**
 * Judge0 CE submissions (issue 12, point 2): a token over one kiln job per run (`number_of_runs`),
 * with what a job does not hold (the expected output, the options to answer with, the callback and
 * whether it was sent). Tenant-scoped like every resource; retention deleting a job leaves the
 * submission answering 404.
 */
export const compatMigration: Migration = {
  name: '0016_compat',
  up: async (db) => {
    await db.schema
      .createTable('judge0_submissions')
      .addColumn('token', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('agent_id', 'text')
      .addColumn('language_id', 'integer', (c) => c.notNull())
      .addColumn('job_ids', 'text', (c) => c.notNull())
      .addColumn('request', 'text', (c) => c.notNull())
      .addColumn('callback_url', 'text')
      // null: no callback; pending → sending → sent | failed (claimed by one replica).
      .addColumn('callback_state', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('judge0_runs')
      .addColumn('job_id', 'text', (c) => c.primaryKey())
      .addColumn('token', 'text', (c) => c.notNull())
      .execute();
    // A compiled language's compile step, separate from the run (issue 12, point 3): JSON, null when none.
    await db.schema.alterTable('jobs').addColumn('compile_result', 'text').execute();
  },
};
