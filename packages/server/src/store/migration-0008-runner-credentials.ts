import type { Migration } from './migrations.js';

/**
 * Per-runner credentials (issue 7, point 6) and sealed secret env values (point 7).
 *
 * `runner_nodes.credential_hash`: the SHA-256 of the runner's own credential, null when none is valid
 * (never issued, or revoked by the operator). `job_secrets`: a job's `secret_env`, encrypted with a key
 * kept outside the database (AES-256-GCM), one row per job, deleted when the job ends.
 */
export const runnerCredentialsMigration: Migration = {
  name: '0008_runner_credentials',
  up: async (db) => {
    await db.schema.alterTable('runner_nodes').addColumn('credential_hash', 'text').execute();
    await db.schema
      .createTable('job_secrets')
      .addColumn('job_id', 'text', (c) => c.primaryKey())
      .addColumn('sealed', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};
