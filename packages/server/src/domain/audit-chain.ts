import { createHash, createHmac } from 'node:crypto';

/** The prev_hash of the first event of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted at every depth and no whitespace: the same value always gives the same
 * bytes, so a hash over it can be recomputed by anyone reading the events back.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The fields an event's hash covers: everything it says, plus its place in the chain. */
export interface ChainedEventFields {
  id: string;
  tenant_id: string | null;
  chain_seq: number;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  timestamp: string;
  outcome: string;
  details: Record<string, unknown>;
  prev_hash: string;
}

/**
 * hex SHA-256 over the canonical JSON of the event's fields, including the previous event's hash: the
 * chain of events written before the audit key existed (anyone can recompute it, so anyone with write
 * access to the database could also re-chain it; only the keyed events below are anchored).
 */
export function hashAuditEvent(fields: ChainedEventFields): string {
  return createHash('sha256').update(canonicalJson(fields)).digest('hex');
}

/**
 * The audit key: an HMAC-SHA256 secret kept outside the database (KILN_AUDIT_KEY or `audit.key` in the
 * data dir). A database writer without it can neither forge an event nor re-chain the events after one
 * it changed.
 */
export interface AuditKey {
  /** a public name for the key (derived from it, reveals nothing), recorded on every event it signs */
  readonly id: string;
  /** hex HMAC-SHA256 of `text` */
  mac(text: string): string;
}

export function auditKeyFrom(secret: string): AuditKey {
  const mac = (text: string) => createHmac('sha256', secret).update(text).digest('hex');
  return { id: `ak_${mac('kiln audit key id').slice(0, 16)}`, mac };
}

/** What a keyed event's MAC covers: everything the unkeyed hash covers, plus whom it belongs to and the key. */
export interface KeyedEventFields extends ChainedEventFields {
  subject_agent_id: string | null;
  hmac_key_id: string;
}

export function macAuditEvent(key: AuditKey, fields: KeyedEventFields): string {
  return key.mac(canonicalJson(fields));
}

/**
 * A signed statement "chain `chain_id` had `seq` events ending in `hash` at `at`", kept outside the
 * database: a chain found shorter than its checkpoint, or with another hash at `seq`, was truncated or
 * rewritten. `keyed_from_seq` is the first event signed with the key (earlier ones predate it): a chain
 * re-labelled as unkeyed from there on is caught too.
 */
export interface AuditCheckpoint {
  chain_id: string;
  seq: number;
  hash: string;
  keyed_from_seq: number | null;
  at: string;
  key_id: string;
  mac: string;
}

export function signCheckpoint(key: AuditKey, body: Omit<AuditCheckpoint, 'mac' | 'key_id'>): AuditCheckpoint {
  const unsigned = { ...body, key_id: key.id };
  return { ...unsigned, mac: key.mac(canonicalJson(unsigned)) };
}

export function checkpointSignatureValid(key: AuditKey, checkpoint: AuditCheckpoint): boolean {
  const { mac, ...unsigned } = checkpoint;
  return checkpoint.key_id === key.id && key.mac(canonicalJson(unsigned)) === mac;
}
