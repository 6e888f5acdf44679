import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { precompiled } from './precompiled.js';
import { DB_KINDS, openTestStore, type TestStore } from './testing.js';

describe.each(DB_KINDS)('precompiled statements on %s', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore(kind);
  });
  afterAll(() => t.cleanup());

  it('binds fresh arguments on every run, keeps the fixed values, and works inside a transaction', async () => {
    const insert = precompiled<[chainId: string, seq: number], never>(
      (db, chainId, seq) => db.insertInto('audit_chain_heads').values({ chain_id: chainId, last_seq: seq, last_hash: 'fixed' }),
      2,
    );
    const read = precompiled<[chainId: string], { last_seq: number; last_hash: string }>(
      (db, chainId) => db.selectFrom('audit_chain_heads').select(['last_seq', 'last_hash']).where('chain_id', '=', chainId),
      1,
    );
    await insert(t.store, 'chain-a', 1);
    await t.store.transaction((tx) => insert(tx, 'chain-b', 2));
    expect((await read(t.store, 'chain-a')).rows).toEqual([{ last_seq: 1, last_hash: 'fixed' }]);
    expect((await t.store.transaction((tx) => read(tx, 'chain-b'))).rows).toEqual([{ last_seq: 2, last_hash: 'fixed' }]);
    expect((await read(t.store, 'no-such-chain')).rows).toEqual([]);
  });

  it('refuses a statement that does not pass each argument as a value (its shape would depend on it)', async () => {
    const unused = precompiled<[id: string], never>((db) => db.selectFrom('jobs').selectAll().where('id', '=', 'x'), 1);
    await expect(unused(t.store, 'job_1')).rejects.toThrow(/must use each of its 1 arguments as a value/);
  });
});
