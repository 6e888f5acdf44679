import { KilnError, toRfc3339 } from '@kiln/core';
import { touchApiKey } from '../store/api-keys.js';
import { getRunner } from '../store/fleet.js';
import { precompiled } from '../store/precompiled.js';
import { digestsEqual, hashSecret, parseApiKey, parseRunnerCredential, secretMatches } from '../domain/keys.js';
import type { Principal, ServiceDeps } from './context.js';

/** What the control plane knows of its shared secrets. */
export interface AuthSecrets {
  /** the operator key (KILN_ADMIN_KEY or the generated one) */
  adminKey: string;
  /** the fleet's join token (KILN_RUNNER_TOKEN): it only registers; new runners are refused when unset */
  runnerToken?: string | undefined;
}

/** A key with its tenant's and agent's status: every keyed request reads it. */
const keyWithOwners = precompiled<[keyId: string], {
  id: string; kind: string; hash: string; revoked_at: string | null; last_used_at: string | null;
  tenant_id: string | null; agent_id: string | null; tenant_status: string | null; agent_status: string | null;
}>(
  (db, keyId) =>
    db
      .selectFrom('api_keys')
      .leftJoin('tenants', 'tenants.id', 'api_keys.tenant_id')
      .leftJoin('agents', 'agents.id', 'api_keys.agent_id')
      .select([
        'api_keys.id',
        'api_keys.kind',
        'api_keys.hash',
        'api_keys.revoked_at',
        'api_keys.last_used_at',
        'api_keys.tenant_id',
        'api_keys.agent_id',
        'tenants.status as tenant_status',
        'agents.status as agent_status',
      ])
      .where('api_keys.id', '=', keyId),
  1,
);

// Compared against when a key id is unknown, so a miss costs the same as a hit.
const DUMMY_DIGEST = hashSecret('kiln-no-such-key');

function unauthorized(detail: string): KilnError {
  return new KilnError('UNAUTHORIZED', detail, { extra: { hint: 'send Authorization: Bearer <key>' } });
}

/**
 * Establishes who is calling from an `Authorization: Bearer …` header. A missing, malformed, unknown or
 * revoked key is 401; an agent key of a disabled agent is 403 AGENT_DISABLED.
 */
export async function authenticate(
  deps: ServiceDeps,
  secrets: AuthSecrets,
  authorization: string | undefined,
): Promise<Principal> {
  if (authorization === undefined || authorization === '') throw unauthorized('no API key was sent');
  const match = /^Bearer +(\S{1,512})$/i.exec(authorization);
  if (!match) throw unauthorized('the Authorization header must be "Bearer <key>"');
  const presented = match[1]!;

  if (secretMatches(presented, secrets.adminKey)) return { kind: 'operator' };
  if (secrets.runnerToken && secretMatches(presented, secrets.runnerToken)) return { kind: 'runner_join' };
  const credential = parseRunnerCredential(presented);
  if (credential) return authenticateRunner(deps, credential);

  const parsed = parseApiKey(presented);
  if (!parsed) {
    digestsEqual(hashSecret(presented), DUMMY_DIGEST);
    throw unauthorized('the API key is not valid');
  }
  const [row] = (await keyWithOwners(deps.store, parsed.keyId)).rows;
  const matches = digestsEqual(hashSecret(parsed.secret), row?.hash ?? DUMMY_DIGEST);
  if (!row || !matches || row.kind !== parsed.kind || row.tenant_id === null) {
    throw unauthorized('the API key is not valid');
  }
  if (row.revoked_at !== null) throw unauthorized('the API key was revoked');
  await recordKeyUse(deps, row.id, row.last_used_at);
  const tenantStatus = row.tenant_status ?? 'active';
  if (row.kind === 'agent') {
    if (row.agent_id === null) throw unauthorized('the API key is not valid');
    if (row.agent_status !== 'active') {
      throw new KilnError('AGENT_DISABLED', `agent ${row.agent_id} is disabled; a tenant admin can enable it`);
    }
    return { kind: 'agent', tenantId: row.tenant_id, agentId: row.agent_id, keyId: row.id, tenantStatus };
  }
  return { kind: 'tenant', tenantId: row.tenant_id, keyId: row.id, tenantStatus };
}

/** How often a key's `last_used_at` is written: at most once a minute per key. */
export const KEY_LAST_USED_RESOLUTION_MS = 60_000;

/** Refreshes `last_used_at` when it is older than a minute: most requests of a busy key write nothing. */
async function recordKeyUse(deps: ServiceDeps, keyId: string, lastUsedAt: string | null): Promise<void> {
  const nowMs = deps.clock.nowMs();
  const cutoff = toRfc3339(nowMs - KEY_LAST_USED_RESOLUTION_MS);
  if (lastUsedAt !== null && lastUsedAt >= cutoff) return;
  try {
    await touchApiKey(deps.store, keyId, toRfc3339(nowMs), cutoff);
  } catch {
    // A lost "last used" stamp must not refuse the request it describes.
  }
}

/** A runner's own credential: valid while its hash is the one stored for that runner (not revoked). */
async function authenticateRunner(deps: ServiceDeps, credential: { runnerId: string; secret: string }): Promise<Principal> {
  const row = await getRunner(deps.store, credential.runnerId);
  const matches = digestsEqual(hashSecret(credential.secret), row?.credential_hash ?? DUMMY_DIGEST);
  if (!row || !matches) {
    throw new KilnError('UNAUTHORIZED', 'the runner credential is not valid (revoked or replaced); register again with the join token', {
      extra: { hint: 'a runner sends its own credential, issued by POST /v1/runner/register' },
    });
  }
  const principal: Principal = { kind: 'runner', runnerId: row.id };
  // Not enumerable: the row holds the runner's signing key, and a logged principal must never show it.
  Object.defineProperty(principal, 'node', { value: row, enumerable: false });
  return principal;
}
