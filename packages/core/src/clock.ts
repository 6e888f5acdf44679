/** The one clock of kiln. Injected everywhere time matters, so leases and TTLs are tested on fake time. */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock that moves only when told to; for tests. */
export class ManualClock implements Clock {
  constructor(private currentMs: number = Date.parse('2026-01-01T00:00:00Z')) {}
  nowMs(): number {
    return this.currentMs;
  }
  advance(ms: number): void {
    this.currentMs += ms;
  }
  set(ms: number): void {
    this.currentMs = ms;
  }
}

/** RFC 3339 with milliseconds, UTC: the one time format of the JSON API. */
export function toRfc3339(ms: number): string {
  return new Date(ms).toISOString();
}
