import { sql } from 'kysely';
import { newId, toRfc3339, type AuditEvent, type AuditOutcome } from '@kiln/core';
import { GENESIS_HASH, macAuditEvent } from '../domain/audit-chain.js';
import { escapeAuditText, sanitizeAuditDetails } from '../domain/audit-details.js';
import { decodeCursor, page } from './pagination.js';
import { precompiled } from './precompiled.js';
import { auditEventFromRow } from './rows.js';
import type { DbHandle, TxHandle } from './store.js';

/** The chain of events that belong to no tenant (operator actions, refused anonymous calls). */
export const OPERATOR_CHAIN = 'operator';

export interface NewAuditEvent {
  tenant_id: string | null;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  outcome: AuditOutcome;
  /** caller-controlled text is escaped and bounded before it is stored (domain/audit-details.ts) */
  details: Record<string, unknown>;
  /** the agent the event belongs to: the acting agent, or the agent whose resource it is (its job…) */
  subject_agent_id?: string | null | undefined;
}

/** Makes the chain's head if it is new and reads it; its no-op update takes the head's row lock on PostgreSQL. */
const lockChainHead = precompiled<[chainId: string], { last_seq: number; last_hash: string }>(
  (db, chainId) =>
    db
      .insertInto('audit_chain_heads')
      .values({ chain_id: chainId, last_seq: 0, last_hash: GENESIS_HASH })
      .onConflict((oc) => oc.column('chain_id').doUpdateSet({ last_seq: sql<number>`audit_chain_heads.last_seq` }))
      .returning(['last_seq', 'last_hash']),
  1,
);

const EVENT_COLUMNS = [
  'id', 'tenant_id', 'chain_id', 'chain_seq', 'actor_id', 'action', 'resource_type', 'resource_id', 'timestamp',
  'outcome', 'details', 'prev_hash', 'hash', 'subject_agent_id', 'hmac_key_id',
] as const;

/** The event's row, its columns in EVENT_COLUMNS order. */
const insertEvent = precompiled<unknown[], never>(
  (db, ...values) => db.insertInto('audit_events').values(Object.fromEntries(EVENT_COLUMNS.map((c, i) => [c, values[i]])) as never),
  EVENT_COLUMNS.length,
);

/**
 * Appends an event to its tenant's hash chain, inside the caller's transaction, signed with the audit key
 * (an HMAC over the event and the previous event's hash). Appends to one chain are serialised: on
 * PostgreSQL by the head row's lock (taken by the upsert that reads it), on SQLite by its single writer.
 * Two statements: the head's upsert and the event's insert, whose trigger moves the head.
 */
export async function appendAuditEvent(tx: TxHandle, event: NewAuditEvent, nowMs: number): Promise<AuditEvent> {
  const chainId = event.tenant_id ?? OPERATOR_CHAIN;
  // One statement makes the head if the chain is new and reads it; its no-op update takes the head's
  // row lock on PostgreSQL (as FOR UPDATE would), so appends to one chain queue behind each other.
  const [head] = (await lockChainHead(tx, chainId)).rows;
  if (!head) throw new Error(`the audit chain head of ${chainId} was not returned`);

  const fields = {
    id: newId('audit_event', nowMs),
    tenant_id: event.tenant_id,
    chain_seq: head.last_seq + 1,
    actor_id: escapeAuditText(event.actor_id, 256),
    action: escapeAuditText(event.action, 128),
    resource_type: escapeAuditText(event.resource_type, 128),
    resource_id: event.resource_id === null ? null : escapeAuditText(event.resource_id, 256),
    timestamp: toRfc3339(nowMs),
    outcome: event.outcome,
    details: sanitizeAuditDetails(event.details),
    prev_hash: head.last_hash,
    subject_agent_id: event.subject_agent_id ?? null,
    hmac_key_id: tx.audit.key.id,
  };
  const hash = macAuditEvent(tx.audit.key, fields);
  const row: Record<(typeof EVENT_COLUMNS)[number], unknown> = { ...fields, chain_id: chainId, details: JSON.stringify(fields.details), hash };
  await insertEvent(tx, ...EVENT_COLUMNS.map((column) => row[column]));
  // The head follows the insert by trigger (migration 0020).
  return auditEventFromRow({ ...fields, chain_id: chainId, details: JSON.stringify(fields.details), hash });
}

export interface AuditFilter {
  /** a tenant's id, `null` for operator-level events, or undefined for every event (operator view) */
  tenantId?: string | null | undefined;
  /** an agent key's view: only the events that belong to this agent */
  subjectAgentId?: string | undefined;
  actor_id?: string | undefined;
  action?: string | undefined;
  resource_type?: string | undefined;
  resource_id?: string | undefined;
  outcome?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

export async function listAuditEvents(h: DbHandle, f: AuditFilter) {
  const after = decodeCursor(f.cursor);
  let q = h.db.selectFrom('audit_events').selectAll().orderBy('id').limit(f.limit + 1);
  if (f.tenantId === null) q = q.where('tenant_id', 'is', null);
  else if (f.tenantId !== undefined) q = q.where('tenant_id', '=', f.tenantId);
  if (f.subjectAgentId !== undefined) q = q.where('subject_agent_id', '=', f.subjectAgentId);
  if (f.actor_id !== undefined) q = q.where('actor_id', '=', f.actor_id);
  if (f.action !== undefined) q = q.where('action', '=', f.action);
  if (f.resource_type !== undefined) q = q.where('resource_type', '=', f.resource_type);
  if (f.resource_id !== undefined) q = q.where('resource_id', '=', f.resource_id);
  if (f.outcome !== undefined) q = q.where('outcome', '=', f.outcome);
  // Timestamps are RFC 3339 UTC text with milliseconds: normalised, they compare as text.
  if (f.since !== undefined) q = q.where('timestamp', '>=', new Date(f.since).toISOString());
  if (f.until !== undefined) q = q.where('timestamp', '<', new Date(f.until).toISOString());
  if (after) q = q.where('id', '>', after);
  return page((await q.execute()).map(auditEventFromRow), f.limit);
}

/** Reads one chain in order, a page at a time, so verifying a long chain does not load it whole. */
export async function* readChain(h: DbHandle, chainId: string, pageSize = 500) {
  let afterSeq = 0;
  for (;;) {
    const rows = await h.db
      .selectFrom('audit_events')
      .selectAll()
      .where('chain_id', '=', chainId)
      .where('chain_seq', '>', afterSeq)
      .orderBy('chain_seq')
      .limit(pageSize)
      .execute();
    for (const row of rows) yield row;
    if (rows.length < pageSize) return;
    afterSeq = rows[rows.length - 1]!.chain_seq;
  }
}

export async function findChainHead(h: DbHandle, chainId: string) {
  return h.db.selectFrom('audit_chain_heads').selectAll().where('chain_id', '=', chainId).executeTakeFirst();
}

export async function listChainHeads(h: DbHandle) {
  return h.db.selectFrom('audit_chain_heads').selectAll().orderBy('chain_id').execute();
}

/** One event by its place in its chain (an index lookup: the chain's sequence is unique). */
export async function findChainEvent(h: DbHandle, chainId: string, seq: number) {
  return h.db
    .selectFrom('audit_events')
    .selectAll()
    .where('chain_id', '=', chainId)
    .where('chain_seq', '=', seq)
    .executeTakeFirst();
}

/** The first event of a chain signed with an audit key (earlier ones predate keyed anchoring). */
export async function firstKeyedSeq(h: DbHandle, chainId: string): Promise<number | null> {
  const row = await h.db
    .selectFrom('audit_events')
    .select('chain_seq')
    .where('chain_id', '=', chainId)
    .where('hmac_key_id', 'is not', null)
    .orderBy('chain_seq')
    .limit(1)
    .executeTakeFirst();
  return row?.chain_seq ?? null;
}
