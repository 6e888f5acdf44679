import { KilnError, newId, toRfc3339, type ApiKey, type ListQuery } from '@kiln/core';
import { formatApiKey, hashSecret, newSecret } from '../domain/keys.js';
import { findAgent } from '../store/agents.js';
import { findApiKey, insertApiKey, listApiKeys, revokeApiKey } from '../store/api-keys.js';
import { apiKeyFromRow } from '../store/rows.js';
import { findTenant } from '../store/tenants.js';
import type { TxHandle } from '../store/store.js';
import { notFound, requireOperator, requireTenantActive, requireTenantAdmin } from './access.js';
import { auditSuccess } from './audit.js';
import type { Principal, ServiceDeps } from './context.js';

async function issueKey(
  deps: ServiceDeps,
  tx: TxHandle,
  kind: 'tenant' | 'agent',
  tenantId: string,
  agentId: string | null,
): Promise<ApiKey> {
  const nowMs = deps.clock.nowMs();
  const id = newId('key', nowMs);
  const secret = newSecret();
  const key = await insertApiKey(tx, {
    id,
    tenant_id: tenantId,
    agent_id: agentId,
    kind,
    hash: hashSecret(secret),
    created_at: toRfc3339(nowMs),
    revoked_at: null,
    last_used_at: null,
  });
  return { ...key, key: formatApiKey(kind, id, secret) };
}

/** The operator makes a tenant admin key. The secret is in this answer only. */
export async function createTenantKey(deps: ServiceDeps, principal: Principal, tenantId: string): Promise<ApiKey> {
  requireOperator(principal);
  return deps.store.transaction(async (tx) => {
    if (!(await findTenant(tx, tenantId))) throw notFound('tenant', tenantId);
    const key = await issueKey(deps, tx, 'tenant', tenantId, null);
    await auditSuccess(deps, tx, principal, {
      action: 'key.create',
      resource_type: 'api_key',
      resource_id: key.id,
      tenant_id: tenantId,
      details: { kind: 'tenant' },
    });
    return key;
  });
}

/** A tenant admin makes a key for one of its agents. The secret is in this answer only. */
export async function createAgentKey(deps: ServiceDeps, principal: Principal, agentId: string): Promise<ApiKey> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  return deps.store.transaction(async (tx) => {
    const agent = await findAgent(tx, tenantId, agentId);
    if (!agent) throw notFound('agent', agentId);
    if (agent.status !== 'active') {
      throw new KilnError('AGENT_DISABLED', `agent ${agentId} is disabled; enable it before giving it a key`);
    }
    const key = await issueKey(deps, tx, 'agent', tenantId, agentId);
    await auditSuccess(deps, tx, principal, {
      action: 'key.create',
      resource_type: 'api_key',
      resource_id: key.id,
      subject_agent_id: agentId,
      details: { kind: 'agent', agent_id: agentId },
    });
    return key;
  });
}

/**
 * Revokes a key. The operator may revoke any key; a tenant admin only its own tenant's keys (another
 * tenant's key answers 404). Revoking twice is INVALID_TRANSITION.
 */
export async function revokeKey(deps: ServiceDeps, principal: Principal, keyId: string): Promise<ApiKey> {
  if (principal.kind !== 'operator') requireTenantAdmin(principal);
  return deps.store.transaction(async (tx) => {
    const row = await findApiKey(tx, keyId);
    if (!row || (principal.kind === 'tenant' && row.tenant_id !== principal.tenantId)) throw notFound('key', keyId);
    if (row.revoked_at !== null) {
      throw new KilnError('INVALID_TRANSITION', `key ${keyId} is already revoked`, {
        extra: { entity: 'api_key', from: 'revoked', to: 'revoked' },
      });
    }
    const revokedAt = toRfc3339(deps.clock.nowMs());
    await revokeApiKey(tx, keyId, revokedAt);
    await auditSuccess(deps, tx, principal, {
      action: 'key.revoke',
      resource_type: 'api_key',
      resource_id: keyId,
      tenant_id: row.tenant_id,
      subject_agent_id: row.agent_id,
      details: { kind: row.kind, agent_id: row.agent_id },
    });
    return apiKeyFromRow({ ...row, revoked_at: revokedAt });
  });
}

/**
 * Keys without their secrets: a tenant admin sees its tenant's keys and its agents'; the operator all
 * (or one tenant's with `tenant_id`). Agents list no keys.
 */
export async function listKeys(deps: ServiceDeps, principal: Principal, query: ListQuery & { tenant_id?: string | undefined }) {
  if (principal.kind === 'operator') return listApiKeys(deps.store, { ...query, tenantId: query.tenant_id });
  const tenantId = requireTenantAdmin(principal);
  if (query.tenant_id !== undefined && query.tenant_id !== tenantId) {
    throw new KilnError('FORBIDDEN', 'tenant_id is for the operator; a tenant key lists its own tenant\'s keys', { field: 'query.tenant_id' });
  }
  return listApiKeys(deps.store, { ...query, tenantId });
}

/** One agent's keys (tenant admin of its tenant; the operator too). */
export async function listAgentKeys(deps: ServiceDeps, principal: Principal, agentId: string, query: ListQuery) {
  const tenantId = principal.kind === 'operator' ? undefined : requireTenantAdmin(principal);
  const agent = tenantId === undefined ? await findAgentAnyTenant(deps, agentId) : await findAgent(deps.store, tenantId, agentId);
  if (!agent) throw notFound('agent', agentId);
  return listApiKeys(deps.store, { ...query, agentId });
}

async function findAgentAnyTenant(deps: ServiceDeps, agentId: string) {
  return deps.store.db.selectFrom('agents').select(['id']).where('id', '=', agentId).executeTakeFirst();
}
