import { describe, expect, it } from 'vitest';
import {
  auditKeyFrom,
  canonicalJson,
  checkpointSignatureValid,
  GENESIS_HASH,
  hashAuditEvent,
  macAuditEvent,
  signCheckpoint,
  type ChainedEventFields,
} from './audit-chain.js';

const event: ChainedEventFields = {
  id: 'evt_1',
  tenant_id: 'ten_1',
  chain_seq: 1,
  actor_id: 'operator',
  action: 'tenant.create',
  resource_type: 'tenant',
  resource_id: 'ten_1',
  timestamp: '2026-01-01T00:00:00.000Z',
  outcome: 'success',
  details: { b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } },
  prev_hash: GENESIS_HASH,
};

describe('canonicalJson', () => {
  it('sorts keys at every depth, so key order does not change the bytes', () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).toBe('{"a":{"c":3,"d":2},"b":1}');
    expect(canonicalJson({ a: { c: 3, d: 2 }, b: 1 })).toBe(canonicalJson({ b: 1, a: { d: 2, c: 3 } }));
    expect(canonicalJson([3, 'x', null, true])).toBe('[3,"x",null,true]');
  });
});

describe('hashAuditEvent', () => {
  it('changes when any field or the previous hash changes', () => {
    const base = hashAuditEvent(event);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(hashAuditEvent({ ...event, details: { ...event.details, b: 2 } })).not.toBe(base);
    expect(hashAuditEvent({ ...event, prev_hash: 'f'.repeat(64) })).not.toBe(base);
    expect(hashAuditEvent({ ...event, outcome: 'denied' })).not.toBe(base);
    expect(hashAuditEvent({ ...event, chain_seq: 2 })).not.toBe(base);
  });
});

describe('keyed anchoring', () => {
  const key = auditKeyFrom('k'.repeat(32));
  const keyed = { ...event, subject_agent_id: null, hmac_key_id: key.id };

  it('signs with the key: another key, or the unkeyed hash, gives another value', () => {
    const mac = macAuditEvent(key, keyed);
    expect(mac).toMatch(/^[0-9a-f]{64}$/);
    expect(macAuditEvent(auditKeyFrom('j'.repeat(32)), keyed)).not.toBe(mac);
    expect(hashAuditEvent(event)).not.toBe(mac);
    expect(macAuditEvent(key, { ...keyed, subject_agent_id: 'agt_1' })).not.toBe(mac);
    expect(key.id).toMatch(/^ak_[0-9a-f]{16}$/);
    expect(key.id).not.toContain('kkkk');
  });

  it('checks a checkpoint\'s signature, which covers every field', () => {
    const checkpoint = signCheckpoint(key, { chain_id: 'ten_1', seq: 5, hash: 'a'.repeat(64), keyed_from_seq: 1, at: event.timestamp });
    expect(checkpointSignatureValid(key, checkpoint)).toBe(true);
    expect(checkpointSignatureValid(key, { ...checkpoint, seq: 4 })).toBe(false);
    expect(checkpointSignatureValid(key, { ...checkpoint, chain_id: 'ten_2' })).toBe(false);
    expect(checkpointSignatureValid(auditKeyFrom('j'.repeat(32)), checkpoint)).toBe(false);
  });
});
