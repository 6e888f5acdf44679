import type { Migration } from './migrations.js';

/**
 * Sessions (issue 8).
 *
 * `runner_nodes.signing_key`: the key the control plane signs its requests to the runner with (derived
 * from the runner's credential when it is issued; the runner derives the same key from what it holds).
 * `sessions`: the zone asked for, the idle timeout pinned from the policy, metadata, the sandbox, why it
 * ended, and the seed (env, file names) it was created with. `session_steps`: the request, the verdict,
 * small output inline, and why a step failed without running.
 */
export const sessionsMigration: Migration = {
  name: '0010_sessions',
  up: async (db) => {
    await db.schema.alterTable('runner_nodes').addColumn('signing_key', 'text').execute();
    for (const [column, type] of [
      ['zone', 'text'],
      ['metadata', 'text'],
      ['seed', 'text'],
      ['sandbox_id', 'text'],
      ['reason', 'text'],
      ['idle_timeout_seconds', 'integer'],
    ] as const) {
      await db.schema.alterTable('sessions').addColumn(column, type).execute();
    }
    await db.schema.createIndex('sessions_by_runner').on('sessions').columns(['runner_id', 'status']).execute();
    for (const [column, type] of [
      ['spec', 'text'],
      ['verdict', 'text'],
      ['stdout_inline', 'text'],
      ['stderr_inline', 'text'],
      ['error', 'text'],
    ] as const) {
      await db.schema.alterTable('session_steps').addColumn(column, type).execute();
    }
  },
};
