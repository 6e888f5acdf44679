import { KilnError, type AuditEvent, type AuditOutcome, type AuditVerifyResult } from '@kiln/core';
import type { Selectable } from 'kysely';
import {
  checkpointSignatureValid,
  GENESIS_HASH,
  hashAuditEvent,
  macAuditEvent,
  type AuditCheckpoint,
  type AuditKey,
  type ChainedEventFields,
} from '../domain/audit-chain.js';
import { appendAuditEvent, findChainHead, listAuditEvents, OPERATOR_CHAIN, readChain, type AuditFilter } from '../store/audit.js';
import type { AuditEventsTable } from '../store/schema.js';
import type { TxHandle } from '../store/store.js';
import { actorIdOf, tenantOf, type Principal, type ServiceDeps } from './context.js';

/** What a use case tells the audit about its change. */
export interface AuditRecord {
  action: string;
  resource_type: string;
  resource_id: string | null;
  /** the chain: defaults to the actor's tenant */
  tenant_id?: string | null;
  /** the agent whose resource this is (its job, itself, its key); an acting agent is always the subject */
  subject_agent_id?: string | null;
  details?: Record<string, unknown>;
}

/** Records a successful change in the same transaction as the change itself. */
export async function auditSuccess(
  deps: ServiceDeps,
  tx: TxHandle,
  principal: Principal,
  record: AuditRecord,
): Promise<AuditEvent> {
  return appendAuditEvent(tx, eventOf(principal, record, 'success'), deps.clock.nowMs());
}

/** The event a principal's call records: its chain (the record's tenant, else the actor's), actor and details. */
function eventOf(principal: Principal, record: AuditRecord, outcome: AuditOutcome, extraDetails: Record<string, unknown> = {}) {
  return {
    tenant_id: record.tenant_id === undefined ? tenantOf(principal) : record.tenant_id,
    actor_id: actorIdOf(principal),
    action: record.action,
    resource_type: record.resource_type,
    resource_id: record.resource_id,
    outcome,
    details: { actor_kind: principal.kind, ...extraDetails, ...record.details },
    subject_agent_id: principal.kind === 'agent' ? principal.agentId : (record.subject_agent_id ?? null),
  };
}

/**
 * Records a refused call in a transaction of its own (the refused change was rolled back).
 * `denied` for authentication and authorisation refusals, `error` for everything else.
 */
export async function auditRefusal(
  deps: ServiceDeps,
  principal: Principal,
  record: AuditRecord & { status: number; code: string },
): Promise<void> {
  const outcome: AuditOutcome = [401, 403, 404].includes(record.status) ? 'denied' : 'error';
  const event = eventOf(principal, record, outcome, { status: record.status, code: record.code });
  await deps.store.transaction((tx) => appendAuditEvent(tx, event, deps.clock.nowMs()));
}

/** The chain a principal may read: its tenant's; the operator's choice (`none`: operator-level events). */
function scopeOf(principal: Principal, requestedTenant: string | undefined): string | null | undefined {
  if (principal.kind === 'tenant' || principal.kind === 'agent') {
    if (requestedTenant !== undefined && requestedTenant !== principal.tenantId) {
      throw new KilnError('FORBIDDEN', 'a tenant key reads only its own tenant\'s events; drop tenant_id', {
        field: 'query.tenant_id',
      });
    }
    return principal.tenantId;
  }
  if (principal.kind !== 'operator') throw new KilnError('FORBIDDEN', 'this key cannot read the audit trail');
  if (requestedTenant === 'none') return null;
  return requestedTenant;
}

/** Lists events: the operator all, a tenant admin its tenant's, an agent only the events that belong to it. */
export async function listAudit(
  deps: ServiceDeps,
  principal: Principal,
  query: Omit<AuditFilter, 'tenantId' | 'subjectAgentId'> & { tenant_id?: string | undefined },
) {
  const { tenant_id, ...rest } = query;
  const subjectAgentId = principal.kind === 'agent' ? principal.agentId : undefined;
  return listAuditEvents(deps.store, { ...rest, tenantId: scopeOf(principal, tenant_id), subjectAgentId });
}

type EventRow = Selectable<AuditEventsTable>;

/** The fields of a stored event that its unkeyed hash covers. */
export function chainedFieldsOf(row: EventRow, details: Record<string, unknown> = JSON.parse(row.details)): ChainedEventFields {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    chain_seq: row.chain_seq,
    actor_id: row.actor_id,
    action: row.action,
    resource_type: row.resource_type,
    resource_id: row.resource_id,
    timestamp: row.timestamp,
    outcome: row.outcome,
    details,
    prev_hash: row.prev_hash,
  };
}

/** What a stored event's hash should be: the keyed MAC, or the unkeyed SHA-256 of events from before the key. */
function expectedHash(key: AuditKey, row: EventRow, details: Record<string, unknown> = JSON.parse(row.details)): string {
  const fields = chainedFieldsOf(row, details);
  if (row.hmac_key_id === null) return hashAuditEvent(fields);
  return macAuditEvent(key, { ...fields, subject_agent_id: row.subject_agent_id, hmac_key_id: row.hmac_key_id });
}

/** True when a stored event matches its hash (its signature, for a signed one). */
export function eventHashHolds(key: AuditKey, row: EventRow): boolean {
  try {
    return (row.hmac_key_id === null || row.hmac_key_id === key.id) && expectedHash(key, row) === row.hash;
  } catch {
    return false;
  }
}

/** Why one event breaks the chain, or undefined when it holds. */
function checkEvent(
  key: AuditKey,
  row: EventRow,
  position: { seq: number; prevHash: string; keyedFromSeq: number | null },
  checkpoint: AuditCheckpoint | undefined,
): string | undefined {
  let details: Record<string, unknown>;
  try {
    details = JSON.parse(row.details) as Record<string, unknown>;
  } catch {
    return 'details are not valid JSON';
  }
  if (row.chain_seq !== position.seq) return `expected sequence ${position.seq}, found ${row.chain_seq}`;
  if (row.prev_hash !== position.prevHash) return 'prev_hash does not match the previous event';
  if (row.hmac_key_id === null) {
    // An unsigned event is only believable before signing started: else it was re-chained without the key.
    const signedFrom = position.keyedFromSeq ?? checkpoint?.keyed_from_seq ?? null;
    if (signedFrom !== null && row.chain_seq >= signedFrom) {
      return `the event is not signed with the audit key, but the chain is signed from event ${signedFrom} on`;
    }
  } else if (row.hmac_key_id !== key.id) {
    return `the event is signed with audit key ${row.hmac_key_id}, not the configured ${key.id} (KILN_AUDIT_KEY or audit.key changed?)`;
  }
  if (expectedHash(key, row, details) !== row.hash) {
    return row.hmac_key_id === null ? 'the event does not match its hash' : 'the event does not match its signature (HMAC)';
  }
  if (checkpoint && row.chain_seq === checkpoint.seq && row.hash !== checkpoint.hash) {
    return `the event differs from the signed checkpoint of ${checkpoint.at}`;
  }
  return undefined;
}

/**
 * Walks one chain from its first event, recomputing each hash (the HMAC with the audit key for events
 * signed with it); answers the first event whose hash, link or sequence does not match. The chain is then
 * held against its signed checkpoint, kept outside the database: a chain shorter than its checkpoint was
 * truncated, even when a database writer fixed up the chain head to match.
 */
export async function verifyAuditChain(
  deps: ServiceDeps,
  principal: Principal,
  requestedTenant?: string,
): Promise<AuditVerifyResult> {
  if (principal.kind === 'agent') {
    throw new KilnError('FORBIDDEN', 'an agent key sees only its own events; a tenant admin key verifies the tenant\'s chain');
  }
  const scope = scopeOf(principal, requestedTenant);
  const chainId = scope === null || scope === undefined ? OPERATOR_CHAIN : scope;
  const { key, checkpoints } = deps.store.audit;
  const answer = { key_id: key.id, keyed_from_seq: null as number | null, checkpoint: null as AuditVerifyResult['checkpoint'] };
  let checkpoint: AuditCheckpoint | undefined;
  try {
    checkpoint = checkpoints.read()[chainId];
  } catch (err) {
    return { ok: false, count: 0, ...answer, reason: `the audit checkpoint file ${checkpoints.location} cannot be read: ${(err as Error).message}` };
  }
  if (checkpoint) {
    answer.checkpoint = { seq: checkpoint.seq, hash: checkpoint.hash, at: checkpoint.at };
    if (!checkpointSignatureValid(key, checkpoint)) {
      return { ok: false, count: 0, ...answer, reason: `the checkpoint in ${checkpoints.location} is not signed with the configured audit key` };
    }
  }
  let count = 0;
  let prevHash = GENESIS_HASH;
  for await (const row of readChain(deps.store, chainId)) {
    count += 1;
    const reason = checkEvent(key, row, { seq: count, prevHash, keyedFromSeq: answer.keyed_from_seq }, checkpoint);
    if (reason) return { ok: false, count, ...answer, broken_event_id: row.id, reason };
    if (row.hmac_key_id !== null) answer.keyed_from_seq ??= row.chain_seq;
    prevHash = row.hash;
  }
  if (checkpoint && count < checkpoint.seq) {
    return {
      ok: false,
      count,
      ...answer,
      reason: `the chain has ${count} events, but its signed checkpoint of ${checkpoint.at} recorded ${checkpoint.seq}: events were deleted`,
    };
  }
  const head = await findChainHead(deps.store, chainId);
  if (head && (head.last_seq !== count || (count > 0 && head.last_hash !== prevHash))) {
    return { ok: false, count, ...answer, reason: `the chain head records ${head.last_seq} events; ${count} were found` };
  }
  return { ok: true, count, ...answer };
}
