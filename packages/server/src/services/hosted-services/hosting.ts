import { DEFAULT_ACCESS_CACHE_MS, GrantCache } from './grant-cache.js';

/** How the control plane serves services: where their URLs point, and the proxy's bounds. */
export interface ServiceHostingSettings {
  /**
   * The URL clients reach this control plane at (KILN_PUBLIC_URL): the base of every `proxy_url`.
   * @default the URL the server listens on
   */
  publicUrl?: string | undefined;
  /** A wildcard domain (KILN_SERVICES_DOMAIN): `{id}.{domain}` routes to the service by its Host. */
  domain?: string | undefined;
  /** A proxied request whose answer has not begun within this is a 504. @default 30000 */
  upstreamTimeoutMs?: number;
  /** How long an allowed proxy access decision is reused (KILN_SERVICES_ACCESS_CACHE_MS); 0 disables. @default 1000 */
  accessCacheMs?: number;
}

/** A proxied service's `last_activity_at` is written at most this often per replica. */
export const ACTIVITY_WRITE_INTERVAL_MS = 5000;

/** The hosting settings of one replica, with the per-replica bookkeeping of activity writes. */
export class ServiceHosting {
  publicUrl: string;
  readonly domain: string | undefined;
  readonly upstreamTimeoutMs: number;
  /** Allowed proxy decisions of this replica, reused for `accessCacheMs`. */
  readonly grants: GrantCache;
  private readonly lastWrite = new Map<string, number>();

  constructor(settings: ServiceHostingSettings = {}) {
    this.publicUrl = (settings.publicUrl ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    this.domain = settings.domain?.toLowerCase().replace(/^\.+|\.+$/g, '') || undefined;
    this.upstreamTimeoutMs = settings.upstreamTimeoutMs ?? 30_000;
    this.grants = new GrantCache(settings.accessCacheMs ?? DEFAULT_ACCESS_CACHE_MS);
  }

  /** `{public base}/v1/services/{id}/proxy/` */
  proxyUrl(id: string): string {
    return `${this.publicUrl}/v1/services/${id}/proxy/`;
  }

  /** `{public base}/v1/sessions/{id}/ports/{port}/proxy/` */
  sessionPortUrl(id: string, port: number): string {
    return `${this.publicUrl}/v1/sessions/${id}/ports/${port}/proxy/`;
  }

  /** True when an activity write is due for `key` (and records it as made). */
  activityDue(key: string, nowMs: number): boolean {
    const last = this.lastWrite.get(key);
    if (last !== undefined && nowMs - last < ACTIVITY_WRITE_INTERVAL_MS) return false;
    // Bounded: a replica serving very many services forgets the oldest (it only writes once more).
    if (this.lastWrite.size >= 10_000) this.lastWrite.delete(this.lastWrite.keys().next().value!);
    this.lastWrite.delete(key);
    this.lastWrite.set(key, nowMs);
    return true;
  }
}
