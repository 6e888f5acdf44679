import { KilnError, newId, toRfc3339, DEFAULT_RULESET, type Policy, type Ruleset } from '@kiln/core';
import {
  findPolicy,
  findPolicyByName,
  insertPolicy,
  listPolicies,
  listPolicyVersions,
  publishPolicyVersion,
} from '../store/policies.js';
import { clampRulesetToQuota } from '../domain/quota.js';
import { notFound, requireTenantActive, requireTenantAdmin, requireTenantMember } from './access.js';
import { auditSuccess } from './audit.js';
import { actorIdOf, type Principal, type ServiceDeps } from './context.js';
import { cachesOf } from './caching/short-lived-cache.js';
import { assertRulesetWithinQuota, effectiveQuota } from './quotas.js';

/**
 * Runs a write of the tenant's policies with its cached policies dropped before and after the commit,
 * so this replica's next submission reads what was written.
 */
async function writingPolicies<T>(deps: ServiceDeps, tenantId: string, write: () => Promise<T>): Promise<T> {
  const cache = cachesOf(deps.store).policies;
  cache.forget(`${tenantId}/`);
  try {
    return await write();
  } finally {
    cache.forget(`${tenantId}/`);
  }
}

/**
 * Creates a policy at version 1; a second policy with the same name is CONFLICT. A ruleset above the
 * tenant's quota is POLICY_VIOLATION; without a ruleset it starts from the default one, lowered to the quota.
 */
export async function createPolicy(
  deps: ServiceDeps,
  principal: Principal,
  input: { name: string; ruleset?: Ruleset | undefined },
): Promise<Policy> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  const nowIso = toRfc3339(deps.clock.nowMs());
  const policy: Policy = {
    id: newId('policy', deps.clock.nowMs()),
    tenant_id: tenantId,
    name: input.name,
    version: 1,
    ruleset: input.ruleset ?? DEFAULT_RULESET,
    created_at: nowIso,
    updated_at: nowIso,
  };
  return writingPolicies(deps, tenantId, () => deps.store.transaction(async (tx) => {
    const quota = await effectiveQuota(deps, tx, tenantId);
    if (input.ruleset) assertRulesetWithinQuota(input.ruleset, quota);
    else policy.ruleset = clampRulesetToQuota(DEFAULT_RULESET, quota);
    if (await findPolicyByName(tx, tenantId, input.name)) {
      throw new KilnError('CONFLICT', `a policy named "${input.name}" exists already; publish a new version of it`, {
        field: 'body.name',
      });
    }
    await insertPolicy(tx, policy, actorIdOf(principal));
    await auditSuccess(deps, tx, principal, {
      action: 'policy.create',
      resource_type: 'policy',
      resource_id: policy.id,
      details: { name: policy.name, version: 1 },
    });
    return policy;
  }));
}

/**
 * Publishes version `expected_version + 1`. A stale `expected_version` (someone published first, or
 * it never was the current one) is 409 CONFLICT naming the current version; a ruleset above the
 * tenant's quota is 422 POLICY_VIOLATION naming the field and its ceiling.
 */
export async function publishPolicy(
  deps: ServiceDeps,
  principal: Principal,
  policyId: string,
  input: { ruleset: Ruleset; expected_version: number },
): Promise<Policy> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  return writingPolicies(deps, tenantId, () => deps.store.transaction(async (tx) => {
    assertRulesetWithinQuota(input.ruleset, await effectiveQuota(deps, tx, tenantId));
    const published = await publishPolicyVersion(tx, {
      policyId,
      tenantId,
      expectedVersion: input.expected_version,
      ruleset: input.ruleset,
      nowIso: toRfc3339(deps.clock.nowMs()),
      createdBy: actorIdOf(principal),
    });
    if (!published) {
      const current = await findPolicy(tx, tenantId, policyId);
      if (!current) throw notFound('policy', policyId);
      throw new KilnError(
        'CONFLICT',
        `policy ${policyId} is at version ${current.version}, not ${input.expected_version}; read it and publish again`,
        { field: 'body.expected_version', extra: { current_version: current.version } },
      );
    }
    await auditSuccess(deps, tx, principal, {
      action: 'policy.publish',
      resource_type: 'policy',
      resource_id: policyId,
      details: { name: published.name, version: published.version },
    });
    return published;
  }));
}

export async function getPolicy(deps: ServiceDeps, principal: Principal, id: string): Promise<Policy> {
  const tenantId = requireTenantMember(principal);
  const policy = await findPolicy(deps.store, tenantId, id);
  if (!policy) throw notFound('policy', id);
  return policy;
}

export async function listTenantPolicies(
  deps: ServiceDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined },
) {
  return listPolicies(deps.store, requireTenantMember(principal), query);
}

export async function listVersions(
  deps: ServiceDeps,
  principal: Principal,
  id: string,
  query: { limit: number; cursor?: string | undefined },
) {
  const tenantId = requireTenantMember(principal);
  if (!(await findPolicy(deps.store, tenantId, id))) throw notFound('policy', id);
  return listPolicyVersions(deps.store, id, query);
}
