import type { Migration } from './migrations.js';

/**
 * `api_keys.last_used_at` (issue 11, point 4): when the key last authenticated a request, written at
 * most once a minute per key (a busy key does not write on every request); null when never used.
 */
export const keyLastUsedMigration: Migration = {
  name: '0012_key_last_used',
  up: async (db) => {
    await db.schema.alterTable('api_keys').addColumn('last_used_at', 'text').execute();
  },
};
