import type { QuotaOverridesRecord } from '../../store/quotas.js';

/**
 * How long a replica trusts a tenant's quota overrides it read (issue 14): a change made through this
 * replica is seen at once (the entry is dropped on write); one made through another replica of the same
 * database is seen within this bound. Quotas are ceilings an operator raises or lowers; a second's delay
 * on another replica is the documented price of not reading them on every request.
 */
export const QUOTA_CACHE_TTL_MS = 1_000;

/** At most this many tenants' overrides are held: the oldest entry goes first. */
export const QUOTA_CACHE_MAX_TENANTS = 10_000;

interface Entry {
  record: QuotaOverridesRecord | undefined;
  readAtMs: number;
}

/** A bounded, short-lived cache of `tenant_quotas` rows, one per store (so per database and process). */
export class QuotaOverridesCache {
  private readonly entries = new Map<string, Entry>();

  get(tenantId: string, nowMs: number): Entry | undefined {
    const entry = this.entries.get(tenantId);
    if (!entry) return undefined;
    // A clock that went back counts as expired too: never trust an entry from the future.
    if (nowMs - entry.readAtMs >= QUOTA_CACHE_TTL_MS || nowMs < entry.readAtMs) {
      this.entries.delete(tenantId);
      return undefined;
    }
    return entry;
  }

  set(tenantId: string, record: QuotaOverridesRecord | undefined, nowMs: number): void {
    this.entries.delete(tenantId);
    if (this.entries.size >= QUOTA_CACHE_MAX_TENANTS) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(tenantId, { record, readAtMs: nowMs });
  }

  forget(tenantId: string): void {
    this.entries.delete(tenantId);
  }

  get size(): number {
    return this.entries.size;
  }
}

const caches = new WeakMap<object, QuotaOverridesCache>();

/** The cache of one store: test apps and replicas on other databases never share entries. */
export function quotaCacheOf(store: object): QuotaOverridesCache {
  let cache = caches.get(store);
  if (!cache) caches.set(store, (cache = new QuotaOverridesCache()));
  return cache;
}
