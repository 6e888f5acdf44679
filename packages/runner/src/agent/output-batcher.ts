import type { JobEvent } from '@kiln/core';

/**
 * Gathers a job's output chunks and sends them in batches, so a chatty program costs a few requests a
 * second rather than one per write. Sends are sequential, so chunks arrive in order.
 */
export class OutputBatcher {
  private pending: JobEvent[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private sentAny = false;

  constructor(
    private readonly send: (events: JobEvent[]) => Promise<void>,
    private readonly flushIntervalMs = 50,
    private readonly maxBatchBytes = 256 * 1024,
  ) {}

  push(event: JobEvent): void {
    this.pending.push(event);
    if (event.type === 'output') this.pendingBytes += event.data_base64.length;
    if (this.pendingBytes >= this.maxBatchBytes || this.pending.length >= 200) this.flushSoon(0);
    else this.flushSoon(this.flushIntervalMs);
  }

  /** True when nothing was sent yet and every pending event is of this type. */
  onlyPending(type: JobEvent['type']): boolean {
    return !this.sentAny && this.pending.length > 0 && this.pending.every((e) => e.type === type);
  }

  /** Drops what is pending (and its timer). */
  discard(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Sends what is pending and waits for every send so far. Output streaming is best effort. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length > 0) {
      this.sentAny = true;
      this.sending = this.sending.then(() => this.send(batch)).catch(() => {});
    }
    await this.sending;
  }

  private flushSoon(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.flush(), delayMs);
  }
}
