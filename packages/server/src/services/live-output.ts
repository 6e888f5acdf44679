import { randomUUID } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import type { OutputLossReason } from '@kiln/core';

/** One chunk of a running job's output, numbered so a watcher can join late without gaps or repeats. */
export interface OutputChunk {
  seq: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

/** Output the runner could not deliver live, in the same numbering as the chunks around it. */
export interface OutputLoss {
  seq: number;
  stream: 'stdout' | 'stderr';
  lost_bytes: number;
  reason: OutputLossReason;
}

export type OutputItem = OutputChunk | OutputLoss;

export const isOutputLoss = (item: OutputItem): item is OutputLoss => 'lost_bytes' in item;

/** The most characters in one live chunk. */
const PIECE_MAX_CHARS = 2048;
/**
 * The most bytes a chunk's text takes as JSON: well inside one PostgreSQL NOTIFY (8000 bytes with its
 * envelope), so every chunk reaches every replica and none is held back in-process.
 */
const PIECE_MAX_JSON_BYTES = 6000;

/**
 * Cuts output into live chunks: at most 2048 characters, fewer when escaping or UTF-8 would make one
 * too big for a NOTIFY, and never between the two halves of a surrogate pair.
 */
export function* outputPieces(data: string): Generator<string> {
  for (let at = 0; at < data.length; ) {
    let length = Math.min(PIECE_MAX_CHARS, data.length - at);
    for (;;) {
      if (length > 1 && at + length < data.length && isHighSurrogate(data.charCodeAt(at + length - 1))) length--;
      if (length <= 1 || Buffer.byteLength(JSON.stringify(data.slice(at, at + length))) <= PIECE_MAX_JSON_BYTES) break;
      length = Math.ceil(length / 2);
    }
    yield data.slice(at, at + length);
    at += length;
  }
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

interface JobOutput {
  items: OutputItem[];
  bytes: number;
  nextSeq: number;
  /** bytes not kept because the buffer was full */
  droppedBytes: number;
  /** A character split between two reports is decoded whole, not as two replacement characters. */
  decoders: { stdout: StringDecoder; stderr: StringDecoder };
  endedAt?: number;
}

/** Where a warning about lost output goes (pino's `warn` in the server). */
export type LossWarning = (fields: { job_id: string; reason: OutputLossReason; bytes: number }, message: string) => void;

export interface LiveOutputOptions {
  /** Output kept per job for watchers that join late. @default 1048576 */
  maxBytesPerJob?: number;
  /** How long an ended job's output is kept. @default 60000 */
  keepAfterEndMs?: number;
  warn?: LossWarning;
}

/**
 * The recent output of running jobs, kept in memory so a watcher that connects after the job started
 * (`kiln run` connects right after submitting) still sees every chunk from the first. Bounded per job,
 * and forgotten a while after the job ends (its stdout and stderr artifacts hold the whole output).
 * Per replica: on several replicas a watcher sees what reached its own replica.
 *
 * It also counts every byte of output that some watcher did not get live, by reason (`/metrics`), and
 * logs a warning for each cause.
 */
export class LiveOutput {
  /**
   * This replica's name for the numbers it gives: a runner's reports may reach different replicas,
   * each numbering its own, so a watcher follows the numbers of each origin apart.
   */
  readonly origin: string = randomUUID();
  private readonly jobs = new Map<string, JobOutput>();
  private readonly lost = new Map<OutputLossReason, number>();
  private readonly maxBytesPerJob: number;
  private readonly keepAfterEndMs: number;
  private readonly warn: LossWarning;

  constructor(options: LiveOutputOptions = {}) {
    this.maxBytesPerJob = options.maxBytesPerJob ?? 1024 * 1024;
    this.keepAfterEndMs = options.keepAfterEndMs ?? 60_000;
    this.warn = options.warn ?? (() => {});
  }

  /** Decodes a piece of a job's stream as UTF-8, keeping a character cut at its end for the next piece. */
  decode(jobId: string, stream: 'stdout' | 'stderr', bytes: Buffer): string {
    return this.job(jobId).decoders[stream].write(bytes);
  }

  append(jobId: string, stream: 'stdout' | 'stderr', data: string): OutputChunk {
    const job = this.job(jobId);
    const chunk = { seq: job.nextSeq++, stream, data };
    if (job.bytes + data.length <= this.maxBytesPerJob) {
      job.items.push(chunk);
      job.bytes += data.length;
    } else {
      // Watchers connected now still get this chunk; one joining later will not.
      if (job.droppedBytes === 0) {
        this.warn(
          { job_id: jobId, reason: 'live_buffer_full', bytes: data.length },
          `live output buffer of ${this.maxBytesPerJob} bytes is full; watchers joining later miss the rest (read the stdout/stderr artifacts)`,
        );
      }
      job.droppedBytes += data.length;
      this.count('live_buffer_full', data.length);
    }
    return chunk;
  }

  /** Output the runner says it could not deliver: numbered with the chunks, so watchers learn where. */
  appendLoss(jobId: string, stream: 'stdout' | 'stderr', reason: OutputLossReason, lostBytes: number): OutputLoss {
    const job = this.job(jobId);
    const loss = { seq: job.nextSeq++, stream, lost_bytes: lostBytes, reason };
    job.items.push(loss);
    this.recordLoss(jobId, reason, lostBytes, true);
    return loss;
  }

  /** Items after `afterSeq`, in order. */
  since(jobId: string, afterSeq = 0): OutputItem[] {
    return (this.jobs.get(jobId)?.items ?? []).filter((c) => c.seq > afterSeq);
  }

  /** The number of the last item of the job produced here (kept or not); 0 when none. */
  lastSeq(jobId: string): number {
    return (this.jobs.get(jobId)?.nextSeq ?? 1) - 1;
  }

  /** True when output of this job was produced here and not all of it was kept. */
  droppedAny(jobId: string): boolean {
    return (this.jobs.get(jobId)?.droppedBytes ?? 0) > 0;
  }

  /** True when this replica holds output of the job (it may still be missing some: `droppedAny`). */
  knows(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  /** Counts bytes a watcher did not get; `warn` once per cause (callers decide what one cause is). */
  recordLoss(jobId: string, reason: OutputLossReason, bytes: number, warn: boolean): void {
    this.count(reason, bytes);
    if (warn) {
      this.warn({ job_id: jobId, reason, bytes }, `live output lost (${reason}); the whole output is in the job's stdout/stderr artifacts`);
    }
  }

  /** Bytes lost so far, by reason, since this process started. */
  lostBytesByReason(): ReadonlyMap<OutputLossReason, number> {
    return this.lost;
  }

  /** Marks a job ended; its output is dropped later, and old ended jobs are swept now. */
  end(jobId: string, nowMs = Date.now()): void {
    const job = this.jobs.get(jobId);
    if (job) job.endedAt = nowMs;
    for (const [id, j] of this.jobs) {
      if (j.endedAt !== undefined && nowMs - j.endedAt > this.keepAfterEndMs) this.jobs.delete(id);
    }
  }

  private job(jobId: string): JobOutput {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { items: [], bytes: 0, nextSeq: 1, droppedBytes: 0, decoders: { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') } };
      this.jobs.set(jobId, job);
    }
    return job;
  }

  private count(reason: OutputLossReason, bytes: number): void {
    this.lost.set(reason, (this.lost.get(reason) ?? 0) + bytes);
  }
}
