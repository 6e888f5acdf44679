import { createPostgresDatabase } from '../../../../test/support/databases.js';
import type { AuditAnchor } from './audit-anchor.js';
import { openStore, type DbDialect, type Store } from './store.js';

/** A fresh store for one test file, and how to throw it away. */
export interface TestStore {
  store: Store;
  cleanup(): Promise<void>;
}

/**
 * Opens a fresh, migrated store of either kind: SQLite in memory, or a new PostgreSQL database on the
 * test server (from test/support), anchored with `audit` (else a random key, checkpoints in memory). Use with `describe.each(DB_KINDS)` so every test runs on both.
 */
export async function openTestStore(kind: DbDialect, audit?: AuditAnchor, onQuery?: (sql: string, parameters: readonly unknown[]) => void): Promise<TestStore> {
  const hook = onQuery ? { onQuery } : {};
  if (kind === 'sqlite') {
    const store = await openStore({ kind: 'sqlite', file: ':memory:', ...hook }, audit);
    return { store, cleanup: () => store.close() };
  }
  const database = await createPostgresDatabase();
  const store = await openStore({ kind: 'postgres', url: database.url, poolSize: 8, ...hook }, audit);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await database.drop();
    },
  };
}

export const DB_KINDS: DbDialect[] = ['sqlite', 'postgres'];
