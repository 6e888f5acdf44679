import {
  applyQuotaOverrides,
  DEFAULT_TENANT_QUOTA,
  KilnError,
  toRfc3339,
  type Ruleset,
  type TenantQuota,
  type TenantQuotaOverrides,
  type TenantQuotaView,
} from '@kiln/core';
import { quotaExcesses } from '../domain/quota.js';
import { findQuotaOverrides, saveQuotaOverrides, type QuotaOverridesRecord } from '../store/quotas.js';
import { cachesOf } from './caching/short-lived-cache.js';
import type { DbHandle } from '../store/store.js';
import { findTenant } from '../store/tenants.js';
import { notFound, requireOperator, requireTenantMember } from './access.js';
import { auditSuccess } from './audit.js';
import { actorIdOf, type Principal, type ServiceDeps } from './context.js';

export function quotaDefaultsOf(deps: Pick<ServiceDeps, 'quotaDefaults'>): TenantQuota {
  return deps.quotaDefaults ?? DEFAULT_TENANT_QUOTA;
}

/**
 * The quota in force for a tenant, with the overrides it came from. Read through the store's short-lived
 * cache (`CACHE_TTL_MS`) unless `fresh`: writers and the operator's own reads ask for the row.
 */
export async function loadTenantQuota(deps: ServiceDeps, h: DbHandle, tenantId: string, options: { fresh?: boolean } = {}): Promise<TenantQuotaView> {
  const record = await readOverrides(deps, h, tenantId, options.fresh === true);
  const overrides = record?.overrides ?? {};
  return {
    tenant_id: tenantId,
    ...applyQuotaOverrides(quotaDefaultsOf(deps), overrides),
    overrides,
    updated_at: record?.updated_at ?? null,
  };
}

async function readOverrides(deps: ServiceDeps, h: DbHandle, tenantId: string, fresh: boolean): Promise<QuotaOverridesRecord | undefined> {
  const cache = cachesOf(deps.store).quotas;
  const nowMs = deps.clock.nowMs();
  if (!fresh) {
    const hit = cache.get(tenantId, nowMs);
    if (hit) return hit.value;
  }
  const record = await findQuotaOverrides(h, tenantId);
  // A writer's read inside its own transaction may still be rolled back: only committed rows are kept.
  if (!fresh || h === deps.store) cache.set(tenantId, record, nowMs);
  return record;
}

/** Just the values in force (what submission and publishing check against). */
export async function effectiveQuota(deps: ServiceDeps, h: DbHandle, tenantId: string): Promise<TenantQuota> {
  return valuesOf(await loadTenantQuota(deps, h, tenantId));
}

function valuesOf(view: TenantQuotaView): TenantQuota {
  const { tenant_id: _tenant, overrides: _overrides, updated_at: _updated, ...quota } = view;
  return quota;
}

/**
 * Refuses a ruleset above the tenant's quota: 422 POLICY_VIOLATION naming the first field at fault
 * (`body.ruleset.limits.memory_bytes`) and its `ceiling`; `errors` lists every one.
 */
export function assertRulesetWithinQuota(ruleset: Ruleset, quota: TenantQuota, root = 'body.ruleset'): void {
  const excesses = quotaExcesses(ruleset, quota);
  const first = excesses[0];
  if (!first) return;
  const describe = (e: (typeof excesses)[number]) => `ruleset.${e.path} is ${e.value}, above this tenant's ceiling of ${e.ceiling}`;
  throw new KilnError(
    'POLICY_VIOLATION',
    `${describe(first)}${excesses.length > 1 ? ` (and ${excesses.length - 1} more)` : ''}; ` +
      'ask for less, or ask the operator to raise the tenant\'s quota',
    {
      field: `${root}.${first.path}`,
      errors: excesses.map((e) => ({ field: `${root}.${e.path}`, message: describe(e) })),
      extra: { ceiling: first.ceiling, requested: first.value, ceilings: excesses.map((e) => ({ field: `${root}.${e.path}`, ceiling: e.ceiling })) },
    },
  );
}

/** The operator reads any tenant's quota. */
export async function getTenantQuota(deps: ServiceDeps, principal: Principal, tenantId: string): Promise<TenantQuotaView> {
  requireOperator(principal);
  if (!(await findTenant(deps.store, tenantId))) throw notFound('tenant', tenantId);
  return loadTenantQuota(deps, deps.store, tenantId, { fresh: true });
}

/** A tenant admin or agent reads its own tenant's quota. */
export async function getOwnQuota(deps: ServiceDeps, principal: Principal): Promise<TenantQuotaView> {
  return loadTenantQuota(deps, deps.store, requireTenantMember(principal), { fresh: true });
}

/**
 * Replaces a tenant's overrides (operator only), audited. Policies already published above a lowered
 * quota stay as they are (versions are immutable); jobs submitted from then on are held to the lower of
 * the two, and the policy's next version must fit. The answer names those policies.
 */
export async function putTenantQuota(
  deps: ServiceDeps,
  principal: Principal,
  tenantId: string,
  overrides: TenantQuotaOverrides,
): Promise<TenantQuotaView & { policies_above_quota: { policy_id: string; fields: string[] }[] }> {
  requireOperator(principal);
  const cache = cachesOf(deps.store).quotas;
  cache.forget(tenantId);
  try {
    return await saveTenantQuota(deps, principal, tenantId, overrides);
  } finally {
    // Dropped again once committed: a read between the first drop and the commit cached the old row.
    cache.forget(tenantId);
  }
}

async function saveTenantQuota(
  deps: ServiceDeps,
  principal: Principal,
  tenantId: string,
  overrides: TenantQuotaOverrides,
): Promise<TenantQuotaView & { policies_above_quota: { policy_id: string; fields: string[] }[] }> {
  return deps.store.transaction(async (tx) => {
    if (!(await findTenant(tx, tenantId))) throw notFound('tenant', tenantId);
    await saveQuotaOverrides(tx, { tenantId, overrides, nowIso: toRfc3339(deps.clock.nowMs()), updatedBy: actorIdOf(principal) });
    const view = await loadTenantQuota(deps, tx, tenantId, { fresh: true });
    const quota = valuesOf(view);
    // Bounded: the answer is a hint for the operator, not a report of every policy a tenant ever made.
    const policies = await tx.db
      .selectFrom('policies')
      .select(['id', 'ruleset'])
      .where('tenant_id', '=', tenantId)
      .orderBy('id')
      .limit(1000)
      .execute();
    const above = policies
      .map((p) => ({ policy_id: p.id, fields: quotaExcesses(JSON.parse(p.ruleset) as Ruleset, quota).map((e) => `ruleset.${e.path}`) }))
      .filter((p) => p.fields.length > 0);
    await auditSuccess(deps, tx, principal, {
      action: 'tenant.quota.update',
      resource_type: 'tenant',
      resource_id: tenantId,
      tenant_id: tenantId,
      details: { overrides, policies_above_quota: above.map((p) => p.policy_id) },
    });
    return { ...view, policies_above_quota: above };
  });
}
