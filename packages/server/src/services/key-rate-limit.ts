import { KilnError } from '@kiln/core';
import { TokenBuckets } from '../domain/token-buckets.js';
import type { Principal, ServiceDeps } from './context.js';
import { effectiveQuota } from './quotas.js';

/** A refused request: the 429 to answer, and whether to audit it (only the first of a run is). */
export interface RateRefusal {
  error: KilnError;
  audit: boolean;
}

/**
 * The per-key limit on mutating requests of tenant and agent keys: a token bucket per key, kept in this
 * process (each control-plane replica counts on its own), sized by the key's tenant quota
 * (`rate_limit.requests_per_second`, `rate_limit.burst`), read on each call so a change applies at once.
 * The operator key and runners are not limited here.
 */
export class KeyRateLimiter {
  private readonly buckets = new TokenBuckets();

  constructor(private readonly deps: ServiceDeps) {}

  /** Takes a token for the principal's key; answers the refusal when there is none. */
  async admit(principal: Principal): Promise<RateRefusal | undefined> {
    if (principal.kind !== 'tenant' && principal.kind !== 'agent') return undefined;
    const { rate_limit: rate } = await effectiveQuota(this.deps, this.deps.store, principal.tenantId);
    const taken = this.buckets.take(principal.keyId, { perSecond: rate.requests_per_second, burst: rate.burst }, this.deps.clock.nowMs());
    if (taken.allowed) return undefined;
    const error = new KilnError(
      'RATE_LIMITED',
      `key ${principal.keyId} is over its rate of ${rate.requests_per_second} write requests per second ` +
        `(burst ${rate.burst}); retry after ${taken.retryAfterSeconds} s`,
      { extra: { retry_after: taken.retryAfterSeconds, reason: 'key_rate', limit: rate } },
    );
    return { error, audit: taken.firstRefusal };
  }
}
