import type { EgressDenialCount, EgressDenialReason, EgressSummary } from '@kiln/core';

/**
 * What one sandbox did through the egress proxy: counted per connection (or per plain-HTTP request),
 * with the denials grouped by host, port and reason so a summary stays small whatever the sandbox tries.
 */
export type { EgressDenialCount, EgressDenialReason, EgressSummary } from '@kiln/core';

/** Distinct (host, port, reason) groups kept; a sandbox trying a million names keeps a bounded map. */
const MAX_DENIAL_GROUPS = 64;
/** Groups listed in a summary. */
const SUMMARY_DENIALS = 20;

export class EgressStats {
  connectionsAllowed = 0;
  connectionsDenied = 0;
  connectionsFailed = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** Open connections now (for the per-sandbox cap). */
  open = 0;
  private readonly denials = new Map<string, EgressDenialCount>();
  private droppedGroups = 0;

  get bytesTotal(): number {
    return this.bytesSent + this.bytesReceived;
  }

  get connectionsTotal(): number {
    return this.connectionsAllowed + this.connectionsDenied;
  }

  deny(host: string, port: number, reason: EgressDenialReason): void {
    this.connectionsDenied += 1;
    const key = `${reason} ${host}:${port}`;
    const hit = this.denials.get(key);
    if (hit) hit.count += 1;
    else if (this.denials.size < MAX_DENIAL_GROUPS) this.denials.set(key, { host, port, reason, count: 1 });
    else this.droppedGroups += 1;
  }

  summary(): EgressSummary {
    const sorted = [...this.denials.values()].sort((a, b) => b.count - a.count);
    return {
      connections_allowed: this.connectionsAllowed,
      connections_denied: this.connectionsDenied,
      connections_failed: this.connectionsFailed,
      bytes_sent: this.bytesSent,
      bytes_received: this.bytesReceived,
      denied: sorted.slice(0, SUMMARY_DENIALS).map((d) => ({ ...d })),
      denied_groups_dropped: this.droppedGroups + Math.max(0, sorted.length - SUMMARY_DENIALS),
    };
  }
}
