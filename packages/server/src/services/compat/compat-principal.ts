import { KilnError } from '@kiln/core';
import { authenticate, type AuthSecrets } from '../auth.js';
import type { Principal, ServiceDeps } from '../context.js';

/**
 * Who calls a compatibility face (Piston, Judge0). Their clients were written for services that take
 * no key (Piston) or a header of their own (Judge0's `X-Auth-Token`), so:
 *
 * - a request that presents a key is authenticated exactly as on `/v1` (`Bearer <key>` or the bare
 *   key): a wrong key is 401, never a fall-back to the mapped agent;
 * - a request without one acts as the agent the operator mapped the face to (`KILN_PISTON_AGENT`,
 *   `KILN_JUDGE0_AGENT`), when there is one, else it is 401.
 *
 * The mapped agent is safe because the operator opts in per face, the agent is looked up at every
 * request (a disabled agent or a suspended tenant stops it at once), and everything it runs is bounded by
 * its tenant's policy, quota, queue cap and rate limit like any other agent's work, audited under its id.
 * The control plane listens on 127.0.0.1 unless the operator says otherwise.
 */
export async function compatPrincipal(
  deps: ServiceDeps,
  secrets: AuthSecrets,
  presentedKey: string | undefined,
  mappedAgentId: string | undefined,
): Promise<Principal> {
  if (presentedKey !== undefined && presentedKey !== '') {
    const header = /^Bearer +/i.test(presentedKey) ? presentedKey : `Bearer ${presentedKey}`;
    const principal = await authenticate(deps, secrets, header);
    if (principal.kind !== 'tenant' && principal.kind !== 'agent') {
      throw new KilnError('FORBIDDEN', 'this face runs code for a tenant: send a tenant or agent key');
    }
    return principal;
  }
  if (mappedAgentId === undefined) throw new KilnError('UNAUTHORIZED', 'no API key was sent');
  const row = await deps.store.db
    .selectFrom('agents')
    .innerJoin('tenants', 'tenants.id', 'agents.tenant_id')
    .select(['agents.id', 'agents.tenant_id', 'agents.status', 'tenants.status as tenant_status'])
    .where('agents.id', '=', mappedAgentId)
    .executeTakeFirst();
  if (!row) throw new KilnError('UNAUTHORIZED', 'no API key was sent, and the agent this face is mapped to does not exist');
  if (row.status !== 'active') throw new KilnError('AGENT_DISABLED', `agent ${row.id} is disabled; a tenant admin can enable it`);
  return { kind: 'agent', tenantId: row.tenant_id, agentId: row.id, keyId: `mapped:${row.id}`, tenantStatus: row.tenant_status };
}
