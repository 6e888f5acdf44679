import type { Migration } from './migrations.js';

/**
 * Workflows (issue 10): a workflow's name and why it ended; each step's reason, and lookups the engine
 * makes on every job end (the step of a job) and every sweep (unfinished workflows), kept indexed so
 * their cost stays flat as workflows accumulate (the sweeper looks at open steps only).
 */
export const workflowsMigration: Migration = {
  name: '0009_workflows',
  up: async (db) => {
    await db.schema.alterTable('workflows').addColumn('name', 'text').execute();
    await db.schema.alterTable('workflows').addColumn('reason', 'text').execute();
    await db.schema.alterTable('workflow_steps').addColumn('reason', 'text').execute();
    await db.schema.createIndex('workflow_steps_by_job').on('workflow_steps').column('job_id').execute();
    await db.schema.createIndex('workflows_by_status').on('workflows').columns(['status', 'id']).execute();
    await db.schema.createIndex('workflow_steps_by_status').on('workflow_steps').columns(['status', 'workflow_id']).execute();
    await db.schema.createIndex('workflows_by_tenant').on('workflows').columns(['tenant_id', 'id']).execute();
  },
};
