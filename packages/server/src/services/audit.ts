import { KilnError, type AuditEvent, type AuditOutcome, type AuditVerifyResult } from '@kiln/core';
import { hashAuditEvent } from '../domain/audit-chain.js';
import { appendAuditEvent, findChainHead, listAuditEvents, OPERATOR_CHAIN, readChain, type AuditFilter } from '../store/audit.js';
import type { TxHandle } from '../store/store.js';
import { actorIdOf, tenantOf, type Principal, type ServiceDeps } from './context.js';

/** What a use case tells the audit about its change. */
export interface AuditRecord {
  action: string;
  resource_type: string;
  resource_id: string | null;
  /** the chain: defaults to the actor's tenant */
  tenant_id?: string | null;
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

export async function listAudit(
  deps: ServiceDeps,
  principal: Principal,
  query: Omit<AuditFilter, 'tenantId'> & { tenant_id?: string | undefined },
) {
  const { tenant_id, ...rest } = query;
  return listAuditEvents(deps.store, { ...rest, tenantId: scopeOf(principal, tenant_id) });
}

/**
 * Walks one chain from its first event, recomputing each hash; answers the first event whose stored
 * hash, link or sequence does not match. The chain head is checked too, so deleting the newest events
 * is caught as well.
 */
export async function verifyAuditChain(
  deps: ServiceDeps,
  principal: Principal,
  requestedTenant?: string,
): Promise<AuditVerifyResult> {
  const scope = scopeOf(principal, requestedTenant);
  const chainId = scope === null || scope === undefined ? OPERATOR_CHAIN : scope;
  let count = 0;
  let prevHash: string | undefined;
  for await (const row of readChain(deps.store, chainId)) {
    count += 1;
    let details: Record<string, unknown>;
    try {
      details = JSON.parse(row.details) as Record<string, unknown>;
    } catch {
      return { ok: false, count, broken_event_id: row.id, reason: 'details are not valid JSON' };
    }
    if (row.chain_seq !== count) {
      return { ok: false, count, broken_event_id: row.id, reason: `expected sequence ${count}, found ${row.chain_seq}` };
    }
    if (prevHash !== undefined && row.prev_hash !== prevHash) {
      return { ok: false, count, broken_event_id: row.id, reason: 'prev_hash does not match the previous event' };
    }
    const expected = hashAuditEvent({
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
    });
    if (expected !== row.hash) {
      return { ok: false, count, broken_event_id: row.id, reason: 'the event does not match its hash' };
    }
    prevHash = row.hash;
  }
  const head = await findChainHead(deps.store, chainId);
  if (head && (head.last_seq !== count || (count > 0 && head.last_hash !== prevHash))) {
    return { ok: false, count, reason: `the chain head records ${head.last_seq} events; ${count} were found` };
  }
  return { ok: true, count };
}
