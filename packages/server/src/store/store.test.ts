import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase } from '../../../../test/support/databases.js';
import { MIGRATIONS } from './migrations.js';
import { openStore } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('openStore', () => {
  it('keeps SQLite in a WAL file with foreign keys on, and reopens it without migrating again', async () => {
    const file = join(dir, 'nested', 'kiln.db');
    const first = await openStore({ kind: 'sqlite', file });
    const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(first.db);
    expect(mode.rows[0]?.journal_mode).toBe('wal');
    await expect(
      first.db.insertInto('agents').values({ id: 'agt_x', tenant_id: 'ten_missing', name: 'x', type: 'x', status: 'active', created_at: 'x' }).execute(),
    ).rejects.toThrow(/FOREIGN KEY/);
    await first.close();
    const second = await openStore({ kind: 'sqlite', file });
    const names = await second.db.selectFrom('kiln_migrations').select('name').orderBy('name').execute();
    expect(names.map((n) => n.name)).toEqual(MIGRATIONS.map((m) => m.name).sort());
    await second.ping();
    await second.close();
  });

  it('lets several replicas migrate one PostgreSQL database at once', async () => {
    const database = await createPostgresDatabase();
    try {
      const stores = await Promise.all([1, 2, 3].map(() => openStore({ kind: 'postgres', url: database.url, poolSize: 2 })));
      const names = await stores[0]!.db.selectFrom('kiln_migrations').select('name').execute();
      expect(names).toHaveLength(MIGRATIONS.length);
      await Promise.all(stores.map((s) => s.close()));
    } finally {
      await database.drop();
    }
  });

  it('refuses a database it cannot reach', async () => {
    await expect(openStore({ kind: 'postgres', url: 'postgres://nobody:x@127.0.0.1:1/none' })).rejects.toThrow();
  });

  it('forbids a sandbox instance without an owner (the database checks exactly one)', async () => {
    const store = await openStore({ kind: 'sqlite', file: ':memory:' });
    await store.db
      .insertInto('runner_nodes')
      .values({ id: 'run_1', name: 'r', status: 'healthy', zone: null, capacity: 1, address: null, labels: '{}', languages: '[]', last_heartbeat_at: null, created_at: 'x' })
      .execute();
    const base = { kind: 'job', runner_id: 'run_1', status: 'provisioning', created_at: 'x', terminated_at: null, session_id: null, service_id: null };
    await expect(store.db.insertInto('sandbox_instances').values({ ...base, id: 'sbx_1', job_id: null }).execute()).rejects.toThrow(
      /CHECK/,
    );
    await store.close();
  });
});
