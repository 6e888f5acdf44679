import type { Limits, Ruleset, TenantQuota } from '@kiln/core';

/** A ruleset value above the tenant's quota: its path in the ruleset, what it asks and the ceiling. */
export interface QuotaExcess {
  /** `limits.memory_bytes` */
  path: string;
  value: number;
  ceiling: number;
}

/** The ruleset's sections the quota bounds, by the same names. */
const BOUNDED_SECTIONS = ['limits', 'artifacts', 'sessions', 'services', 'concurrency'] as const;

/** Each numeric ruleset value the quota has a ceiling for, with that ceiling. */
function* boundedValues(ruleset: Ruleset, quota: TenantQuota): Generator<{ section: string; name: string; value: number; ceiling: number }> {
  for (const section of BOUNDED_SECTIONS) {
    const values = ruleset[section] as Record<string, unknown>;
    for (const [name, ceiling] of Object.entries(quota[section] as Record<string, number>)) {
      const value = values[name];
      if (typeof value === 'number') yield { section, name, value, ceiling };
    }
  }
}

/** Every value of `ruleset` above the quota (empty when it fits). */
export function quotaExcesses(ruleset: Ruleset, quota: TenantQuota): QuotaExcess[] {
  const excesses: QuotaExcess[] = [];
  for (const { section, name, value, ceiling } of boundedValues(ruleset, quota)) {
    if (value > ceiling) excesses.push({ path: `${section}.${name}`, value, ceiling });
  }
  return excesses;
}

/** The ruleset with every value above the quota lowered to the quota's ceiling. */
export function clampRulesetToQuota(ruleset: Ruleset, quota: TenantQuota): Ruleset {
  const clamped = structuredClone(ruleset);
  for (const { section, name, value, ceiling } of boundedValues(ruleset, quota)) {
    if (value > ceiling) (clamped[section as (typeof BOUNDED_SECTIONS)[number]] as Record<string, number>)[name] = ceiling;
  }
  return clamped;
}

/**
 * The ceilings a job may ask up to: the pinned policy's, lowered by the tenant's quota. A quota lowered
 * after a policy was published bounds that policy's jobs from the next submission on.
 */
export function limitCeilings(policyLimits: Limits, quota: TenantQuota): Limits {
  const ceilings: Limits = { ...policyLimits };
  for (const [name, ceiling] of Object.entries(quota.limits) as [keyof Limits, number][]) {
    const value = ceilings[name];
    if (value !== undefined && value > ceiling) ceilings[name] = ceiling;
  }
  return ceilings;
}
