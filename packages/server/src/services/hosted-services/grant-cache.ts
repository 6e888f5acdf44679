import { hashSecret } from '../../domain/keys.js';
import type { RunnerEndpoint } from '../sessions/runner-link.js';
import type { TokenScope } from './tokens.js';

/** How long a proxy access decision is reused on one replica (KILN_SERVICES_ACCESS_CACHE_MS). @default 1000 */
export const DEFAULT_ACCESS_CACHE_MS = 1000;
/** Decisions one replica remembers at once; past this the oldest are forgotten. */
export const MAX_CACHED_GRANTS = 10_000;

/** What a remembered decision lets the proxy skip: the owner, credential and runner reads. */
export interface CachedGrant {
  runner: RunnerEndpoint;
  /** the port the request reaches (a service's own, or the session port in the path) */
  port: number;
}

interface Entry extends CachedGrant {
  ownerId: string;
  expiresAtMs: number;
}

/**
 * Allowed proxy decisions, remembered for a short while so that a busy service's traffic does not cost
 * three database reads per request (the owner, the key or token, the runner). Only "allowed" is
 * remembered, never a refusal. An entry lives at most `ttlMs`, and never past its token's expiry, so a
 * revoked key or token, a suspended tenant, a disabled agent or an ended service is refused on every
 * replica within `ttlMs`; on the replica that revoked a token or stopped the service, at once
 * (`forgetOwner`). The credential is kept only as a SHA-256 digest.
 */
export class GrantCache {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly ttlMs: number = DEFAULT_ACCESS_CACHE_MS) {}

  /** The key of one credential (kind and value) for one scope. */
  static keyOf(scope: TokenScope, credential: string): string {
    return `${scope.owner_type}\n${scope.owner_id}\n${scope.port}\n${hashSecret(credential)}`;
  }

  get(key: string, nowMs: number): CachedGrant | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Remembers an allowed decision until `min(now + ttl, notAfterMs)`. */
  remember(key: string, ownerId: string, grant: CachedGrant, nowMs: number, notAfterMs = Infinity): void {
    if (this.ttlMs <= 0) return;
    const expiresAtMs = Math.min(nowMs + this.ttlMs, notAfterMs);
    if (expiresAtMs <= nowMs) return;
    this.entries.delete(key);
    while (this.entries.size >= MAX_CACHED_GRANTS) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { ...grant, ownerId, expiresAtMs });
  }

  /** Drops every decision about one service or session (its token revoked, or it stopped). */
  forgetOwner(ownerId: string): void {
    for (const [key, entry] of this.entries) if (entry.ownerId === ownerId) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
