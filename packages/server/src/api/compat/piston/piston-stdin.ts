import { isKilnError, JOB_STDIN_CHUNK_MAX_BYTES } from '@kiln/core';
import type { Principal } from '../../../services/context.js';
import type { JobDeps } from '../../../services/job-deps.js';
import { writeJobStdin } from '../../../services/job-stdin/job-stdin.js';

/**
 * Stdin `data` messages waiting for the program, per connection. Past either bound the client is
 * flooding (its program does not read that fast): the connection is closed with an error, which
 * cancels the job, rather than buffer without end or drop bytes from the middle of the stream.
 */
export const PISTON_STDIN_MAX_QUEUED_MESSAGES = 256;
export const PISTON_STDIN_MAX_QUEUED_BYTES = 1024 * 1024;
/** How often a write for a job still queued (not leased yet) is tried again. */
const QUEUED_JOB_RETRY_MS = 200;

/**
 * The stdin of a Piston WebSocket's job: `data` messages go to the running program in order, over the
 * job's open stdin (services/job-stdin), a few coalesced into one write while the one before is in
 * flight. Piston's protocol has no end of file: stdin stays open until the program ends or a `signal`
 * ends it, as in Piston.
 */
export class PistonStdin {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private jobId: string | undefined;
  private pumping = false;
  private closed = false;

  constructor(
    private readonly deps: JobDeps,
    private readonly principal: Principal,
    /** A write the job refused for a reason the client should hear (not its program's end). */
    private readonly onError: (message: string) => void,
  ) {}

  /** Queues one message's bytes; false when the queue is full (the caller closes the connection). */
  push(data: string): boolean {
    const bytes = Buffer.from(data, 'utf8');
    if (this.queue.length >= PISTON_STDIN_MAX_QUEUED_MESSAGES || this.queuedBytes + bytes.length > PISTON_STDIN_MAX_QUEUED_BYTES) return false;
    if (bytes.length === 0) return true;
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
    this.pump();
    return true;
  }

  /** The job is submitted: what was queued before goes now. */
  start(jobId: string): void {
    this.jobId = jobId;
    this.pump();
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private pump(): void {
    if (this.pumping || this.jobId === undefined || this.queue.length === 0 || this.closed) return;
    this.pumping = true;
    void this.drain(this.jobId).finally(() => {
      this.pumping = false;
      this.pump();
    });
  }

  private async drain(jobId: string): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const chunk = this.takeChunk();
      for (;;) {
        try {
          await writeJobStdin(this.deps, this.principal, jobId, { data: chunk, eof: false });
          break;
        } catch (err) {
          if (isKilnError(err) && err.code === 'INVALID_TRANSITION' && (err.extra as { from?: string } | undefined)?.from === 'queued' && !this.closed) {
            await new Promise((resolve) => setTimeout(resolve, QUEUED_JOB_RETRY_MS));
            continue;
          }
          // A program that has ended (or a job that did) takes no more input: Piston drops it too.
          if (isKilnError(err) && (err.code === 'INVALID_TRANSITION' || err.code === 'CONFLICT')) return this.close();
          this.onError(`stdin: ${(err as Error).message}`);
          return;
        }
      }
    }
  }

  /** The oldest messages, joined up to one write's size (a message never splits unless it alone is larger). */
  private takeChunk(): Buffer {
    const parts: Buffer[] = [];
    let size = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (size > 0 && size + next.length > JOB_STDIN_CHUNK_MAX_BYTES) break;
      if (next.length > JOB_STDIN_CHUNK_MAX_BYTES - size) {
        parts.push(next.subarray(0, JOB_STDIN_CHUNK_MAX_BYTES - size));
        this.queue[0] = next.subarray(JOB_STDIN_CHUNK_MAX_BYTES - size);
        this.queuedBytes -= JOB_STDIN_CHUNK_MAX_BYTES - size;
        size = JOB_STDIN_CHUNK_MAX_BYTES;
        break;
      }
      parts.push(next);
      size += next.length;
      this.queuedBytes -= next.length;
      this.queue.shift();
    }
    return Buffer.concat(parts);
  }
}
