import { JOB_STDIN_CHUNK_MAX_BYTES, KilnError } from '@kiln/core';
import { z } from 'zod';
import type { StdinWriter } from '../sandbox/driver.js';

/**
 * How long a write waits for its job's program to start: the control plane sees a job `running` from
 * its lease, a moment before the sandbox is up here. @default 10 000
 */
const OPEN_WAIT_MS = 10_000;
/** Writes waiting for their job's program at once, on this runner (each holds one bounded chunk). */
const MAX_WAITING_WRITES = 256;
/**
 * Bytes accepted for one job and not yet taken by its pipe. The control plane sends a job's chunks one
 * at a time, so this is one chunk; a second concurrent caller is refused rather than buffered.
 */
const MAX_PENDING_BYTES = JOB_STDIN_CHUNK_MAX_BYTES;

/** What the control plane sends: the attempt is a fencing token, as in a completion report. */
export const jobStdinBody = z.strictObject({
  attempt: z.number().int().min(1),
  data_base64: z.string().max(Math.ceil(JOB_STDIN_CHUNK_MAX_BYTES / 3) * 4).default(''),
  eof: z.boolean().default(false),
});
export type JobStdinBody = z.infer<typeof jobStdinBody>;

interface OpenStdin {
  attempt: number;
  writer: StdinWriter;
  pendingBytes: number;
  /** Writes of this job in order: each starts once the one before it is in the pipe. */
  chain: Promise<void>;
  ended: boolean;
}

/**
 * The open stdin of jobs running on this runner (submitted with `stdin_open`), written through the
 * runner's signed endpoint (`POST /v1/jobs/{id}/stdin`, see sessions/session-host.ts). A write for
 * another attempt than the one running here is refused (409), as a stale report is; a write for a job
 * whose program is not up yet waits for it a bounded time.
 */
export class JobStdinHost {
  private readonly open = new Map<string, OpenStdin>();
  private readonly waiting = new Map<string, Set<() => void>>();
  private waitingCount = 0;

  constructor(private readonly openWaitMs = OPEN_WAIT_MS) {}

  /** The driver's writer of a starting job's stdin (RunnerAgent passes it as `openStdin`). */
  attach(jobId: string, attempt: number, writer: StdinWriter): void {
    this.open.set(jobId, { attempt, writer, pendingBytes: 0, chain: Promise.resolve(), ended: false });
    for (const wake of this.waiting.get(jobId) ?? []) wake();
  }

  /** The job's run is over (or was never started): later writes are refused. */
  detach(jobId: string, attempt: number): void {
    if (this.open.get(jobId)?.attempt === attempt) this.open.delete(jobId);
  }

  /** Writes one chunk (and/or closes stdin) once the ones before it are in the pipe. */
  async write(jobId: string, input: JobStdinBody): Promise<{ written_bytes: number; eof: boolean }> {
    const data = Buffer.from(input.data_base64, 'base64');
    if (data.length > JOB_STDIN_CHUNK_MAX_BYTES) {
      throw new KilnError('PAYLOAD_TOO_LARGE', `one stdin write carries at most ${JOB_STDIN_CHUNK_MAX_BYTES} bytes`, { field: 'body' });
    }
    const entry = this.open.get(jobId) ?? (await this.waitForOpen(jobId));
    if (entry.attempt !== input.attempt) {
      throw new KilnError('CONFLICT', `attempt ${input.attempt} of job ${jobId} is not the one running here (attempt ${entry.attempt})`);
    }
    if (entry.ended) throw new KilnError('CONFLICT', `job ${jobId}'s stdin is closed`);
    if (entry.pendingBytes + data.length > MAX_PENDING_BYTES) {
      throw new KilnError('CONFLICT', `job ${jobId}'s program has not read the stdin sent before; send the next chunk after this one is answered`);
    }
    entry.pendingBytes += data.length;
    if (input.eof) entry.ended = true;
    const run = entry.chain.then(async () => {
      try {
        if (data.length > 0) await entry.writer.write(data);
        if (input.eof) entry.writer.end();
      } finally {
        entry.pendingBytes -= data.length;
      }
    });
    entry.chain = run.catch(() => {});
    await run;
    return { written_bytes: data.length, eof: input.eof };
  }

  private waitForOpen(jobId: string): Promise<OpenStdin> {
    if (this.waitingCount >= MAX_WAITING_WRITES) {
      return Promise.reject(new KilnError('UNAVAILABLE', 'too many stdin writes wait for their programs to start; retry later'));
    }
    return new Promise<OpenStdin>((resolve, reject) => {
      const wakes = this.waiting.get(jobId) ?? new Set<() => void>();
      this.waiting.set(jobId, wakes);
      this.waitingCount += 1;
      const settle = () => {
        clearTimeout(timer);
        wakes.delete(wake);
        if (wakes.size === 0) this.waiting.delete(jobId);
        this.waitingCount -= 1;
      };
      const wake = () => {
        settle();
        resolve(this.open.get(jobId)!);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new KilnError('NOT_FOUND', `job ${jobId} runs no program with an open stdin on this runner`));
      }, this.openWaitMs);
      wakes.add(wake);
    });
  }
}
