import { toRfc3339 } from '@kiln/core';
import { Counter, Gauge, type Registry } from 'prom-client';
import { appendAuditEvent } from '../store/audit.js';
import type { ServiceDeps } from './context.js';

/** One refused request without a valid key, as counted. */
export interface AuthRefusal {
  /** the network it came from (sourcePrefixOf) */
  source: string;
  method: string;
  /** the route template, never the raw URL */
  route: string;
  code: string;
}

export interface AuthRefusalLimits {
  /** one `auth.refused` event per source per window */
  windowMs: number;
  /** sources tracked per window; beyond, refusals are counted under `other` */
  maxSources: number;
}

interface SourceTally {
  count: number;
  firstAtMs: number;
  lastAtMs: number;
  codes: Map<string, number>;
  routes: Map<string, number>;
}

/** Sources written per window as events of their own; the rest are summed into one `other` event. */
export const AUTH_REFUSAL_EVENTS_PER_WINDOW = 100;
const OTHER = 'other';
const MAX_KEYS_PER_TALLY = 16;

/** Adds `n` under `key`, or under `other` once the map holds MAX_KEYS_PER_TALLY keys. */
function bump(map: Map<string, number>, key: string, n = 1): void {
  const slot = map.has(key) || map.size < MAX_KEYS_PER_TALLY ? key : OTHER;
  map.set(slot, (map.get(slot) ?? 0) + n);
}

/**
 * Refusals of requests that carry no valid key, counted in memory per source network and written to the
 * audit in aggregate: at most one `auth.refused` event per source per window (and at most
 * AUTH_REFUSAL_EVENTS_PER_WINDOW + 1 per window in all), so anonymous traffic cannot grow the audit
 * without bound. Memory is bounded by `maxSources` tallies of bounded size.
 */
export class AuthRefusalTally {
  private tallies = new Map<string, SourceTally>();
  private readonly refused: Counter<'code'>;
  private readonly sources: Gauge;

  constructor(
    private readonly deps: ServiceDeps,
    private readonly limits: AuthRefusalLimits,
    registry: Registry,
  ) {
    this.refused = new Counter({
      name: 'kiln_auth_refused_total',
      help: 'Requests refused for want of a valid key, by error code',
      labelNames: ['code'],
      registers: [registry],
    });
    this.sources = new Gauge({
      name: 'kiln_auth_refusal_sources',
      help: 'Source networks with refused requests in the current audit window',
      registers: [registry],
      collect: () => this.sources.set(this.tallies.size),
    });
  }

  record(refusal: AuthRefusal): void {
    this.refused.inc({ code: refusal.code });
    const nowMs = this.deps.clock.nowMs();
    let source = refusal.source;
    if (!this.tallies.has(source) && this.tallies.size >= this.limits.maxSources) source = OTHER;
    let tally = this.tallies.get(source);
    if (!tally) {
      tally = { count: 0, firstAtMs: nowMs, lastAtMs: nowMs, codes: new Map(), routes: new Map() };
      this.tallies.set(source, tally);
    }
    tally.count += 1;
    tally.lastAtMs = nowMs;
    bump(tally.codes, refusal.code);
    bump(tally.routes, `${refusal.method} ${refusal.route}`);
  }

  /** Writes the window's tallies to the operator chain (one transaction) and starts a new window. */
  async flush(): Promise<number> {
    if (this.tallies.size === 0) return 0;
    const tallies = [...this.tallies.entries()].sort(([, a], [, b]) => b.count - a.count);
    this.tallies = new Map();
    const own = tallies.filter(([source]) => source !== OTHER).slice(0, AUTH_REFUSAL_EVENTS_PER_WINDOW);
    const folded = tallies.filter(([source]) => !own.some(([kept]) => kept === source));
    const events = own.map(([source, tally]) => ({ source, tally, sources: 1 }));
    if (folded.length > 0) {
      const sum: SourceTally = { count: 0, firstAtMs: Infinity, lastAtMs: 0, codes: new Map(), routes: new Map() };
      for (const [, t] of folded) {
        sum.count += t.count;
        sum.firstAtMs = Math.min(sum.firstAtMs, t.firstAtMs);
        sum.lastAtMs = Math.max(sum.lastAtMs, t.lastAtMs);
        for (const [k, n] of t.codes) bump(sum.codes, k, n);
        for (const [k, n] of t.routes) bump(sum.routes, k, n);
      }
      events.push({ source: OTHER, tally: sum, sources: folded.length });
    }
    const nowMs = this.deps.clock.nowMs();
    await this.deps.store.transaction(async (tx) => {
      for (const { source, tally, sources } of events) {
        await appendAuditEvent(
          tx,
          {
            tenant_id: null,
            actor_id: 'anonymous',
            action: 'auth.refused',
            resource_type: 'source',
            resource_id: source,
            outcome: 'denied',
            details: {
              count: tally.count,
              first_at: toRfc3339(tally.firstAtMs),
              last_at: toRfc3339(tally.lastAtMs),
              codes: Object.fromEntries(tally.codes),
              routes: Object.fromEntries(tally.routes),
              ...(source === OTHER ? { sources } : {}),
            },
          },
          nowMs,
        );
      }
    });
    return events.length;
  }

  /** Flushes every window; the returned stop flushes what is left. */
  start(onError: (err: unknown) => void): () => Promise<void> {
    let running: Promise<unknown> = Promise.resolve();
    const flush = () => {
      running = running.then(() => this.flush()).catch(onError);
      return running;
    };
    const timer = setInterval(() => void flush(), this.limits.windowMs);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await flush();
    };
  }
}
