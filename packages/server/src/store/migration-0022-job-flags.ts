import { sql, type Kysely } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * `jobs.flags` (issue 14): what a job is part of, set at its creation (domain/job-flags.ts), so a small
 * job's lease and completion skip the workflow, secrets and Judge0 lookups that find nothing for it.
 * Jobs from before are flagged from the tables those lookups read: nothing in flight loses its workflow,
 * its secrets or its callback across the upgrade.
 */
export const jobFlagsMigration: Migration = {
  name: '0022_job_flags',
  up: async (db) => {
    await db.schema.alterTable('jobs').addColumn('flags', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await flagJobsFromTheirTables(db);
  },
};

/** Sets each job's flags from the tables that say what it is part of (the bits of domain/job-flags.ts). */
export async function flagJobsFromTheirTables(db: Kysely<any>): Promise<void> {
  await sql`update jobs set flags = flags | 1 where id in (select job_id from workflow_steps where job_id is not null)`.execute(db);
  await sql`update jobs set flags = flags | 2 where id in (select job_id from judge0_runs)`.execute(db);
  await sql`update jobs set flags = flags | 4 where id in (select job_id from job_secrets)`.execute(db);
}
