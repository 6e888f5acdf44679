import { createHash } from 'node:crypto';

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

/** hex SHA-256 over the canonical JSON of the event's fields, including the previous event's hash. */
export function hashAuditEvent(fields: ChainedEventFields): string {
  return createHash('sha256').update(canonicalJson(fields)).digest('hex');
}
