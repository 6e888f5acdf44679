import type { CompletionReport, JobEvent } from '@kiln/core';
import type { AgentLogger } from './agent.js';
import { ControlPlaneError } from './control-plane-client.js';

/** JSON around one event and around a report, generously counted. */
const EVENT_OVERHEAD_BYTES = 96;
const REPORT_OVERHEAD_BYTES = 128;
/** The most events one report may carry (the protocol allows 256). */
const MAX_EVENTS_PER_BATCH = 200;

export type LiveBytes = NonNullable<CompletionReport['live_bytes']>;

export interface OutputBatcherOptions {
  /** Sends one batch; rejects when it was not delivered. */
  send: (events: JobEvent[]) => Promise<void>;
  logger: AgentLogger;
  jobId: string;
  /**
   * The largest request body the control plane accepts (from its register answer). A batch, encoded
   * as the JSON request it travels in, is kept to half of it. @default 1048576
   */
  maxRequestBytes?: number;
  /** @default 50 */
  flushIntervalMs?: number;
  /** A batch is sent once it holds this much. @default 262144 */
  maxBatchBytes?: number;
  /**
   * Output held undelivered (the control plane is slow or away) past which new output is dropped
   * (and announced as `output_lost`): the sandbox's whole output still goes to the artifacts.
   * @default 8 batches, at least 1 MiB
   */
  maxBacklogBytes?: number;
}

/**
 * Gathers a job's output chunks and sends them in batches, so a chatty program costs a few requests a
 * second rather than one per write. Sends are sequential, so chunks arrive in order. Every batch fits
 * the control plane's body limit: a chunk too big for one is split, and a batch is cut as soon as the
 * next chunk would not fit. What cannot be delivered (a refused batch, a backlog past its bound) is
 * logged and announced to the control plane as `output_lost`, so watchers are told in-band.
 */
export class OutputBatcher {
  private pending: JobEvent[] = [];
  private pendingBytes = 0;
  private inFlightBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private sentAny = false;
  private stale = false;
  private lostAny = false;
  /** Bytes of each stream handed to the sender or announced lost: what the events carry, from the start. */
  private readonly liveBytes: LiveBytes = { stdout: 0, stderr: 0 };
  /** Undelivered output not yet announced, per stream. */
  private readonly lost = { stdout: { runner_refused: 0, runner_backlog: 0 }, stderr: { runner_refused: 0, runner_backlog: 0 } };
  private readonly batchBytes: number;
  private readonly pieceBytes: number;
  private readonly backlogBytes: number;
  private readonly flushIntervalMs: number;

  constructor(private readonly options: OutputBatcherOptions) {
    const requestBudget = Math.floor((options.maxRequestBytes ?? 1024 * 1024) / 2) - REPORT_OVERHEAD_BYTES;
    this.batchBytes = Math.max(256, Math.min(options.maxBatchBytes ?? 256 * 1024, requestBudget));
    // base64 makes 4 characters of 3 bytes.
    this.pieceBytes = Math.max(3, Math.floor((this.batchBytes - EVENT_OVERHEAD_BYTES) / 4) * 3);
    this.backlogBytes = options.maxBacklogBytes ?? Math.max(8 * this.batchBytes, 1024 * 1024);
    this.flushIntervalMs = options.flushIntervalMs ?? 50;
  }

  /** The most bytes one batch's request carries (tests check it against the server's limit). */
  get maxBatchRequestBytes(): number {
    return this.batchBytes + REPORT_OVERHEAD_BYTES;
  }

  push(event: JobEvent): void {
    this.add(event, event.type === 'output' ? event.data_base64.length : 0);
  }

  /** Output of the sandbox: split to fit a batch, or counted as lost when too much is waiting. */
  pushOutput(stream: 'stdout' | 'stderr', bytes: Buffer): void {
    for (let at = 0; at < bytes.length; at += this.pieceBytes) {
      const piece = bytes.subarray(at, at + this.pieceBytes);
      if (this.pendingBytes + this.inFlightBytes + piece.length > this.backlogBytes) {
        this.noteLost(stream, 'runner_backlog', piece.length);
        continue;
      }
      this.add({ type: 'output', stream, data_base64: piece.toString('base64') }, Math.ceil(piece.length / 3) * 4);
    }
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

  /**
   * The job ended and its report will carry its output inline: pending output that is the whole rest of
   * one stream is left for the report to carry (no request of its own); anything else is sent as
   * `flush` does. Answers how much of each stream the events carried, for the report's `live_bytes`.
   */
  async finishForReport(): Promise<LiveBytes> {
    // A batch in flight may yet be refused (output lost), and its timer may cut another meanwhile.
    for (let sending = this.sending; ; sending = this.sending) {
      await sending;
      if (sending === this.sending) break;
    }
    const pendingStreams = new Set(this.pending.flatMap((e) => (e.type === 'output' ? [e.stream] : [])));
    // After a loss the pending output is not the exact rest of its stream any more; and two streams'
    // output would lose its interleaving, which watchers see today.
    const leaveToReport = !this.lostAny && !this.stale && pendingStreams.size <= 1;
    if (leaveToReport) this.discard();
    else await this.flush();
    return { ...this.liveBytes };
  }

  /** Sends what is pending (and what was lost, announced) and waits for every send so far. */
  async flush(): Promise<void> {
    this.cutBatch();
    await this.sending;
    // Losses found by the last sends are announced in one more small batch.
    if (this.hasUnannouncedLoss()) {
      this.cutBatch();
      await this.sending;
    }
  }

  private add(event: JobEvent, size: number): void {
    if (this.pending.length > 0 && (this.pendingBytes + size + EVENT_OVERHEAD_BYTES > this.batchBytes || this.pending.length >= MAX_EVENTS_PER_BATCH)) {
      this.cutBatch();
    }
    this.pending.push(event);
    this.pendingBytes += size + EVENT_OVERHEAD_BYTES;
    this.flushSoon(this.pendingBytes >= this.batchBytes ? 0 : this.flushIntervalMs);
  }

  /** Hands the pending events (and announcements of lost output) to the sequential sender. */
  private cutBatch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.takeLossEvents(), ...this.pending];
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length === 0 || this.stale) return;
    this.sentAny = true;
    this.inFlightBytes += bytes;
    for (const event of batch) {
      if (event.type === 'output') this.liveBytes[event.stream] += Buffer.byteLength(event.data_base64, 'base64');
    }
    this.sending = this.sending.then(async () => {
      try {
        if (!this.stale) await this.options.send(batch);
      } catch (err) {
        this.refused(batch, err);
      } finally {
        this.inFlightBytes -= bytes;
      }
    });
  }

  private refused(batch: JobEvent[], err: unknown): void {
    // 409: the attempt is no longer ours, nobody is watching it through us any more.
    if (err instanceof ControlPlaneError && err.status === 409) {
      this.stale = true;
      return;
    }
    let bytes = 0;
    for (const event of batch) {
      if (event.type === 'output') {
        const n = Buffer.byteLength(event.data_base64, 'base64');
        bytes += n;
        this.lost[event.stream].runner_refused += n;
      } else if (event.type === 'output_lost') {
        this.lost[event.stream][event.reason] += event.bytes;
      }
    }
    this.lostAny = true;
    this.options.logger.warn(
      { job_id: this.options.jobId, bytes, err: String(err) },
      'a batch of live output was not delivered; watchers are told, and the stdout/stderr artifacts hold it',
    );
    this.flushSoon(this.flushIntervalMs);
  }

  private noteLost(stream: 'stdout' | 'stderr', reason: 'runner_refused' | 'runner_backlog', bytes: number): void {
    const first = this.lost[stream][reason] === 0;
    this.lostAny = true;
    this.liveBytes[stream] += bytes;
    this.lost[stream][reason] += bytes;
    if (first && reason === 'runner_backlog') {
      this.options.logger.warn(
        { job_id: this.options.jobId, stream },
        'live output is arriving faster than the control plane takes it; the excess is dropped from the live stream (the artifacts hold it)',
      );
    }
    this.flushSoon(this.flushIntervalMs);
  }

  private hasUnannouncedLoss(): boolean {
    return Object.values(this.lost).some((r) => r.runner_refused > 0 || r.runner_backlog > 0);
  }

  private takeLossEvents(): JobEvent[] {
    const events: JobEvent[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      for (const reason of ['runner_refused', 'runner_backlog'] as const) {
        const bytes = this.lost[stream][reason];
        if (bytes > 0) events.push({ type: 'output_lost', stream, bytes, reason });
        this.lost[stream][reason] = 0;
      }
    }
    return events;
  }

  private flushSoon(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.cutBatch(), delayMs);
  }
}
