import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock, newId, toRfc3339 } from '@kiln/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditKeyFrom, GENESIS_HASH, hashAuditEvent } from '../domain/audit-chain.js';
import { fileCheckpointLog } from '../store/audit-anchor.js';
import { appendAuditEvent } from '../store/audit.js';
import { DB_KINDS, openTestStore, type TestStore } from '../store/testing.js';
import type { Store } from '../store/store.js';
import { checkpointAuditChains } from './audit-checkpoints.js';
import { chainedFieldsOf, verifyAuditChain } from './audit.js';
import type { Principal, ServiceDeps } from './context.js';
import { createPolicy } from './policies.js';
import { createTenant } from './tenants.js';

const operator: Principal = { kind: 'operator' };

/** What an attacker with write access to the database (but not the audit key) does first. */
async function dropAuditGuards(store: Store): Promise<void> {
  if (store.dialect === 'sqlite') {
    await sql`drop trigger audit_events_no_update`.execute(store.db);
    await sql`drop trigger audit_events_no_delete`.execute(store.db);
  } else {
    await sql`drop trigger audit_events_immutable on audit_events`.execute(store.db);
  }
}

async function chainRows(store: Store, chainId: string) {
  return store.db.selectFrom('audit_events').selectAll().where('chain_id', '=', chainId).orderBy('chain_seq').execute();
}

/** The unkeyed SHA-256 any reader can compute: how the chain was hashed before the audit key. */
function unkeyedHash(row: Awaited<ReturnType<typeof chainRows>>[number], prevHash: string, details: string) {
  return hashAuditEvent({ ...chainedFieldsOf(row, JSON.parse(details)), prev_hash: prevHash });
}

/** Rewrites event `fromSeq` and re-chains every later one with the unkeyed SHA-256, head included. */
async function rewriteAndRechain(store: Store, chainId: string, fromSeq: number, options: { unlabel: boolean }) {
  let prevHash = GENESIS_HASH;
  for (const row of await chainRows(store, chainId)) {
    if (row.chain_seq < fromSeq && !options.unlabel) {
      prevHash = row.hash;
      continue;
    }
    const details = row.chain_seq === fromSeq ? JSON.stringify({ name: 'forged' }) : row.details;
    const hash = unkeyedHash(row, prevHash, details);
    await sql`update audit_events set details = ${details}, prev_hash = ${prevHash}, hash = ${hash},
      hmac_key_id = ${options.unlabel ? null : row.hmac_key_id} where id = ${row.id}`.execute(store.db);
    prevHash = hash;
  }
  await sql`update audit_chain_heads set last_hash = ${prevHash} where chain_id = ${chainId}`.execute(store.db);
}

describe.each(DB_KINDS)('audit anchoring on %s', (kind) => {
  let t: TestStore;
  let dir: string;
  let deps: ServiceDeps;
  let checkpointFile: string;
  const clock = new ManualClock();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-audit-'));
    checkpointFile = join(dir, 'audit-checkpoints.json');
    t = await openTestStore(kind, { key: auditKeyFrom('audit-key-for-tests-0123456789'), checkpoints: fileCheckpointLog(checkpointFile) });
    deps = { store: t.store, clock };
  });
  afterAll(async () => {
    await t.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  async function tenantWithEvents(name: string, policies = 5) {
    const tenantId = (await createTenant(deps, operator, { name })).id;
    const admin: Principal = { kind: 'tenant', tenantId, keyId: newId('key'), tenantStatus: 'active' };
    for (let i = 0; i < policies; i++) await createPolicy(deps, admin, { name: `p${i}` });
    return { tenantId, admin };
  }

  it('starts the checkpoint log with a new data dir, so its first events raise no warning', async () => {
    const freshDir = mkdtempSync(join(tmpdir(), 'kiln-audit-fresh-'));
    const fresh = await openTestStore(kind, { key: auditKeyFrom('audit-key-for-tests-0123456789'), checkpoints: fileCheckpointLog(join(freshDir, 'cp.json')) });
    try {
      // The server's first pass runs before anything is audited: it starts the (empty) log.
      expect((await checkpointAuditChains(fresh.store, clock.nowMs())).problems).toEqual([]);
      expect(JSON.parse(readFileSync(join(freshDir, 'cp.json'), 'utf8'))).toEqual({ version: 1, chains: {} });
      await createTenant({ store: fresh.store, clock }, operator, { name: 'first' });
      expect((await checkpointAuditChains(fresh.store, clock.nowMs())).problems).toEqual([]);
    } finally {
      await fresh.cleanup();
      rmSync(freshDir, { recursive: true, force: true });
    }
  });

  it('signs every event with the audit key and says what verify checked', async () => {
    const { tenantId, admin } = await tenantWithEvents('signed');
    const rows = await chainRows(t.store, tenantId);
    expect(rows.every((r) => r.hmac_key_id === t.store.audit.key.id)).toBe(true);
    expect(JSON.stringify(rows)).not.toContain('audit-key-for-tests');
    const before = await verifyAuditChain(deps, admin);
    expect(before).toEqual({ ok: true, count: 6, key_id: t.store.audit.key.id, keyed_from_seq: 1, checkpoint: null });

    clock.advance(1000);
    // The first pass over chains that have no checkpoint yet says anchoring against truncation starts now.
    expect((await checkpointAuditChains(t.store, clock.nowMs())).problems).toEqual([expect.stringContaining('checkpointing starts now')]);
    expect((await checkpointAuditChains(t.store, clock.nowMs())).problems).toEqual([]);
    const after = await verifyAuditChain(deps, admin);
    expect(after).toMatchObject({ ok: true, count: 6, checkpoint: { seq: 6, hash: rows[5]!.hash, at: toRfc3339(clock.nowMs()) } });
    // The checkpoint lives outside the database, 0600, signed.
    const file = JSON.parse(readFileSync(checkpointFile, 'utf8'));
    expect(file.chains[tenantId]).toMatchObject({ seq: 6, keyed_from_seq: 1, mac: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('catches truncation of the tail by a database writer who fixed up the chain head', async () => {
    const { tenantId, admin } = await tenantWithEvents('truncated');
    await checkpointAuditChains(t.store, clock.nowMs());
    await dropAuditGuards(t.store);
    const rows = await chainRows(t.store, tenantId);
    await sql`delete from audit_events where chain_id = ${tenantId} and chain_seq > 3`.execute(t.store.db);
    await sql`update audit_chain_heads set last_seq = 3, last_hash = ${rows[2]!.hash} where chain_id = ${tenantId}`.execute(t.store.db);

    const result = await verifyAuditChain(deps, admin);
    expect(result).toMatchObject({ ok: false, count: 3, checkpoint: { seq: 6 } });
    expect(result.reason).toMatch(/signed checkpoint .* recorded 6: events were deleted/);
    // The next checkpoint pass does not roll the checkpoint back to the truncated head.
    const pass = await checkpointAuditChains(t.store, clock.nowMs());
    expect(pass.problems).toEqual([expect.stringContaining(`audit chain ${tenantId} has 3 events, fewer than the 6`)]);
    expect((await verifyAuditChain(deps, admin)).ok).toBe(false);
  });

  it('catches an event rewritten and the chain re-hashed with the unkeyed SHA-256', async () => {
    const { tenantId, admin } = await tenantWithEvents('rewritten');
    await checkpointAuditChains(t.store, clock.nowMs());
    const victim = (await chainRows(t.store, tenantId))[2]!;
    await rewriteAndRechain(t.store, tenantId, 3, { unlabel: false });
    const result = await verifyAuditChain(deps, admin);
    expect(result).toMatchObject({ ok: false, broken_event_id: victim.id, reason: 'the event does not match its signature (HMAC)' });
  });

  it('catches a chain relabelled as written before the key and re-hashed whole', async () => {
    const { tenantId, admin } = await tenantWithEvents('relabelled');
    await checkpointAuditChains(t.store, clock.nowMs());
    const first = (await chainRows(t.store, tenantId))[0]!;
    await rewriteAndRechain(t.store, tenantId, 3, { unlabel: true });
    const result = await verifyAuditChain(deps, admin);
    expect(result).toMatchObject({ ok: false, broken_event_id: first.id });
    expect(result.reason).toMatch(/not signed with the audit key, but the chain is signed from event 1 on/);
  });

  it('refuses a checkpoint file edited to an older head', async () => {
    const { tenantId, admin } = await tenantWithEvents('edited');
    await checkpointAuditChains(t.store, clock.nowMs());
    const file = JSON.parse(readFileSync(checkpointFile, 'utf8'));
    const kept = file.chains[tenantId];
    file.chains[tenantId] = { ...kept, seq: 2 };
    writeFileSync(checkpointFile, JSON.stringify(file));
    expect(await verifyAuditChain(deps, admin)).toMatchObject({ ok: false, reason: expect.stringMatching(/not signed with the configured audit key/) });
    file.chains[tenantId] = kept;
    writeFileSync(checkpointFile, JSON.stringify(file));
    expect((await verifyAuditChain(deps, admin)).ok).toBe(true);
  });

  it('verifies events written before the key by their SHA-256 and reports where keyed anchoring starts', async () => {
    // A chain as an older kiln wrote it: unkeyed SHA-256, no hmac_key_id.
    const chain = newId('tenant');
    let prevHash = GENESIS_HASH;
    for (let seq = 1; seq <= 3; seq++) {
      const fields = {
        id: newId('audit_event'),
        tenant_id: chain,
        chain_seq: seq,
        actor_id: 'operator',
        action: 'legacy.event',
        resource_type: 'test',
        resource_id: null,
        timestamp: toRfc3339(clock.nowMs()),
        outcome: 'success',
        details: { seq },
        prev_hash: prevHash,
      };
      const hash = hashAuditEvent(fields);
      await t.store.db.insertInto('audit_events').values({ ...fields, chain_id: chain, details: JSON.stringify(fields.details), hash }).execute();
      prevHash = hash;
    }
    await t.store.db.insertInto('audit_chain_heads').values({ chain_id: chain, last_seq: 3, last_hash: prevHash }).execute();
    expect(await verifyAuditChain(deps, operator, chain)).toMatchObject({ ok: true, count: 3, keyed_from_seq: null });

    // Signed events follow the old ones; from there on, an unsigned event is a forgery.
    const next = { tenant_id: chain, actor_id: 'operator', action: 'new.event', resource_type: 'test', resource_id: null, outcome: 'success' as const, details: {} };
    await t.store.transaction((tx) => appendAuditEvent(tx, next, clock.nowMs()));
    await checkpointAuditChains(t.store, clock.nowMs());
    expect(await verifyAuditChain(deps, operator, chain)).toMatchObject({ ok: true, count: 4, keyed_from_seq: 4, checkpoint: { seq: 4 } });
    expect(JSON.parse(readFileSync(checkpointFile, 'utf8')).chains[chain].keyed_from_seq).toBe(4);
  });
});
