import type { RunnerRow } from '../store/fleet.js';
import type { Clock, TenantQuota } from '@kiln/core';
import type { Store } from '../store/store.js';
import type { Notifier } from './notifier.js';

/**
 * The one bag of dependencies every service takes (as trigger.dev's engine systems do): no hidden
 * singletons, so tests pass a real store on either database and a ManualClock.
 */
export interface ServiceDeps {
  store: Store;
  clock: Clock;
  /** What a tenant's quota is where the operator set nothing (KILN_QUOTA_*). @default DEFAULT_TENANT_QUOTA */
  quotaDefaults?: TenantQuota;
  /**
   * Wake-ups for the job plane (runners' heartbeats and lease polls). Absent where no fleet runs (tests
   * of the tenant face alone): the runners then learn of a change at their next heartbeat.
   */
  notifier?: Notifier;
}

/** Who is calling, established from the bearer key by `authenticate`. */
export type Principal =
  | { kind: 'operator' }
  | { kind: 'tenant'; tenantId: string; keyId: string; tenantStatus: string }
  | { kind: 'agent'; tenantId: string; agentId: string; keyId: string; tenantStatus: string }
  /** The fleet's join token (KILN_RUNNER_TOKEN): it may only register a runner. */
  | { kind: 'runner_join' }
  /**
   * A runner's own credential: everything it does is bound to `runnerId`. `node` is its row as the
   * authentication read it, for the request that follows (a lease poll's first claim) to reuse.
   */
  | { kind: 'runner'; runnerId: string; node?: RunnerRow }
  | { kind: 'anonymous' };

/** The actor_id the audit records: the agent for agent keys, the key for tenant admins, `operator`. */
export function actorIdOf(principal: Principal): string {
  switch (principal.kind) {
    case 'operator':
      return 'operator';
    case 'tenant':
      return principal.keyId;
    case 'agent':
      return principal.agentId;
    case 'runner':
      return principal.runnerId;
    case 'runner_join':
      return 'runner';
    case 'anonymous':
      return 'anonymous';
  }
}

/** The tenant a principal acts for, if any. */
export function tenantOf(principal: Principal): string | null {
  return principal.kind === 'tenant' || principal.kind === 'agent' ? principal.tenantId : null;
}
