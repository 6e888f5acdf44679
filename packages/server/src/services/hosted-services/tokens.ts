import { randomBytes } from 'node:crypto';
import { KilnError, newId, SERVICE_TOKEN_QUERY, toRfc3339, type ServiceToken } from '@kiln/core';
import { hashSecret } from '../../domain/keys.js';
import {
  countLiveTokens,
  findServiceToken,
  getServiceToken,
  insertServiceToken,
  revokeServiceToken,
  type ServiceTokenRow,
} from '../../store/services.js';
import type { DbHandle } from '../../store/store.js';
import { notFound } from '../access.js';
import { auditSuccess } from '../audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { loadVisibleSession } from '../sessions/lifecycle.js';
import type { ServiceHosting } from './hosting.js';
import { loadVisibleService } from './lifecycle.js';

/** Live tokens one service (or session) may hold at once. */
export const MAX_LIVE_TOKENS_PER_OWNER = 100;
const TOKEN_PREFIX = 'kst_';

/** What a token opens: one port of one service or session. */
export interface TokenScope {
  owner_type: 'service' | 'session';
  owner_id: string;
  port: number;
}

function tokenView(row: ServiceTokenRow, token: string, url: string): ServiceToken {
  return {
    id: row.id,
    token,
    owner_type: row.owner_type as TokenScope['owner_type'],
    owner_id: row.owner_id,
    port: row.port,
    created_at: row.created_at,
    expires_at: row.expires_at,
    url: `${url}?${SERVICE_TOKEN_QUERY}=${encodeURIComponent(token)}`,
  };
}

async function issue(deps: JobDeps, principal: Principal, tenantId: string, agentId: string | null, scope: TokenScope, ttlSeconds: number, url: string) {
  const nowMs = deps.clock.nowMs();
  if ((await countLiveTokens(deps.store, scope.owner_id, nowMs)) >= MAX_LIVE_TOKENS_PER_OWNER) {
    throw new KilnError('CONFLICT', `${scope.owner_type} ${scope.owner_id} holds ${MAX_LIVE_TOKENS_PER_OWNER} live tokens, the most it may; revoke one first`);
  }
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const row: ServiceTokenRow = {
    id: newId('service_token', nowMs),
    tenant_id: tenantId,
    ...scope,
    token_hash: hashSecret(token),
    created_at: toRfc3339(nowMs),
    expires_at: toRfc3339(nowMs + ttlSeconds * 1000),
    revoked_at: null,
  };
  await deps.store.transaction(async (tx) => {
    await insertServiceToken(tx, row);
    await auditSuccess(deps, tx, principal, {
      action: `${scope.owner_type}.token.create`,
      resource_type: scope.owner_type,
      resource_id: scope.owner_id,
      subject_agent_id: agentId,
      details: { token_id: row.id, port: scope.port, ttl_seconds: ttlSeconds, expires_at: row.expires_at },
    });
  });
  return tokenView(row, token, url);
}

/** `POST /v1/services/{id}/tokens`: a token that opens this service alone. */
export async function createServiceToken(deps: JobDeps, hosting: ServiceHosting, principal: Principal, id: string, ttlSeconds: number) {
  const service = await loadVisibleService(deps.store, principal, id);
  if (service.status !== 'starting' && service.status !== 'running') {
    throw new KilnError('INVALID_TRANSITION', `service ${id} is ${service.status}; start a new one`, { extra: { entity: 'service', from: service.status } });
  }
  const scope = { owner_type: 'service' as const, owner_id: id, port: service.port ?? 0 };
  return issue(deps, principal, service.tenant_id, service.agent_id, scope, ttlSeconds, hosting.proxyUrl(id));
}

/** `POST /v1/sessions/{id}/ports/{port}/tokens`: a token that opens this one port of the session. */
export async function createSessionPortToken(deps: JobDeps, hosting: ServiceHosting, principal: Principal, id: string, port: number, ttlSeconds: number) {
  const session = await loadVisibleSession(deps.store, principal, id);
  if (session.status !== 'active') {
    throw new KilnError('INVALID_TRANSITION', `session ${id} is ${session.status}`, { extra: { entity: 'session', from: session.status } });
  }
  const scope = { owner_type: 'session' as const, owner_id: id, port };
  return issue(deps, principal, session.tenant_id, session.agent_id, scope, ttlSeconds, hosting.sessionPortUrl(id, port));
}

/**
 * `DELETE /v1/services/{id}/tokens/{token_id}`: the token is refused from now on: at once on this replica
 * (its proxy forgets what it allowed there), within the access cache's while on the others.
 */
export async function revokeToken(deps: JobDeps, hosting: ServiceHosting, principal: Principal, ownerType: TokenScope['owner_type'], ownerId: string, tokenId: string) {
  const owner = ownerType === 'service' ? await loadVisibleService(deps.store, principal, ownerId) : await loadVisibleSession(deps.store, principal, ownerId);
  const row = await getServiceToken(deps.store, tokenId);
  if (!row || row.owner_id !== ownerId || row.owner_type !== ownerType) throw notFound('token', tokenId);
  await deps.store.transaction(async (tx) => {
    if (!(await revokeServiceToken(tx, tokenId, deps.clock.nowMs()))) return;
    await auditSuccess(deps, tx, principal, {
      action: `${ownerType}.token.revoke`,
      resource_type: ownerType,
      resource_id: ownerId,
      subject_agent_id: owner.agent_id,
      details: { token_id: tokenId },
    });
  });
  hosting.grants.forgetOwner(ownerId);
  const revoked = (await getServiceToken(deps.store, tokenId))!;
  return { id: revoked.id, revoked_at: revoked.revoked_at };
}

/** Whether `presented` is a live token for exactly this scope. */
export async function tokenOpens(h: DbHandle, presented: string, scope: TokenScope, nowMs: number): Promise<boolean> {
  return (await tokenOpensUntil(h, presented, scope, nowMs)) !== undefined;
}

/** When `presented`, a live token for exactly this scope, expires (ms); undefined when it opens nothing here. */
export async function tokenOpensUntil(h: DbHandle, presented: string, scope: TokenScope, nowMs: number): Promise<number | undefined> {
  if (!presented.startsWith(TOKEN_PREFIX) || presented.length > 128) return undefined;
  const row = await findServiceToken(h, hashSecret(presented));
  if (!row || row.revoked_at !== null || row.owner_type !== scope.owner_type || row.owner_id !== scope.owner_id || row.port !== scope.port) {
    return undefined;
  }
  const expiresAtMs = Date.parse(row.expires_at);
  return expiresAtMs > nowMs ? expiresAtMs : undefined;
}
