import type { Policy } from '@kiln/core';
import type { QuotaOverridesRecord } from '../../store/quotas.js';

/**
 * How long a replica trusts a tenant's quota overrides or policy it read (issue 14): a change made
 * through this replica is seen at once (its entries are dropped on write, before and after the commit);
 * one made through another replica of the same database is seen within this bound. A second's delay on
 * another replica is the documented price of not reading them on every submission. What refuses work
 * at once — a revoked key, a suspended tenant, a disabled agent — is never cached.
 */
export const CACHE_TTL_MS = 1_000;

/** At most this many entries per cache: the oldest goes first. */
export const CACHE_MAX_ENTRIES = 10_000;

interface Entry<V> {
  value: V;
  readAtMs: number;
}

/** A bounded map whose entries expire `CACHE_TTL_MS` after they were read from the database. */
export class ShortLivedCache<V> {
  private readonly entries = new Map<string, Entry<V>>();

  get(key: string, nowMs: number): Entry<V> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // A clock that went back counts as expired too: never trust an entry from the future.
    if (nowMs - entry.readAtMs >= CACHE_TTL_MS || nowMs < entry.readAtMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  set(key: string, value: V, nowMs: number): void {
    this.entries.delete(key);
    if (this.entries.size >= CACHE_MAX_ENTRIES) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, readAtMs: nowMs });
  }

  /** Drops every entry whose key starts with `prefix` (a tenant's, say). */
  forget(prefix: string): void {
    for (const key of this.entries.keys()) if (key.startsWith(prefix)) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}

interface StoreCaches {
  /** tenant id → its `tenant_quotas` row (or none) */
  quotas: ShortLivedCache<QuotaOverridesRecord | undefined>;
  /** `${tenant id}/${policy id or #name}` → the policy's current version (or none) */
  policies: ShortLivedCache<Policy | undefined>;
}

const caches = new WeakMap<object, StoreCaches>();

/** The caches of one store: test apps and replicas on other databases never share entries. */
export function cachesOf(store: object): StoreCaches {
  let found = caches.get(store);
  if (!found) caches.set(store, (found = { quotas: new ShortLivedCache(), policies: new ShortLivedCache() }));
  return found;
}
