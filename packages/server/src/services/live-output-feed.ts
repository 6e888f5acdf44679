import { setImmediate as nextTurn } from 'node:timers/promises';
import type { CompletionReport, OutputLossReason } from '@kiln/core';
import type { JobDeps } from './job-deps.js';
import { outputPieces } from './live-output.js';
import { topics } from './notifier.js';

/** Output published per turn of the event loop. */
const OUTPUT_BYTES_PER_TURN = 32 * 1024;

type Stream = 'stdout' | 'stderr';

/**
 * Bytes of a running job's output, to its live watchers on every replica: kept in this replica's live
 * buffer and published in chunks that fit one NOTIFY.
 */
export async function publishOutput(deps: JobDeps, jobId: string, stream: Stream, bytes: Buffer): Promise<void> {
  const data = deps.liveOutput.decode(jobId, stream, bytes);
  // NOTIFY carries at most 8000 bytes, so long chunks travel in pieces.
  let sinceTurn = 0;
  for (const piece of outputPieces(data)) {
    const chunk = deps.liveOutput.append(jobId, stream, piece);
    deps.notifier.publish(topics.job(jobId), { type: 'output', origin: deps.liveOutput.origin, ...chunk });
    // Let sockets take what was written before writing more: written in one go, a whole batch would
    // sit in every watcher's buffer at once, and count against even a fast reader's bound.
    sinceTurn += piece.length;
    if (sinceTurn >= OUTPUT_BYTES_PER_TURN) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
}

/** Output live watchers will not get, announced in-band where it would have been. */
export function publishLoss(deps: JobDeps, jobId: string, stream: Stream, reason: OutputLossReason, bytes: number): void {
  const loss = deps.liveOutput.appendLoss(jobId, stream, reason, bytes);
  deps.notifier.publish(topics.job(jobId), { type: 'lost', origin: deps.liveOutput.origin, ...loss });
}

/**
 * A completion whose runner's events did not carry all of the output (it was still pending when the job
 * ended: `live_bytes` says how much went live): live watchers get the rest now, before the end is
 * announced, from the report's inline copy (at most INLINE_BLOB_MAX_BYTES a stream). Output too big to
 * be inline is announced as missing from the live stream; the stdout/stderr artifacts hold it.
 */
export async function feedUnstreamedOutput(deps: JobDeps, jobId: string, report: CompletionReport): Promise<void> {
  const live = report.live_bytes;
  if (!live) return; // an older runner: its events carried everything
  for (const stream of ['stdout', 'stderr'] as const) {
    const blob = report[stream];
    const from = Math.min(live[stream], blob.size_bytes);
    if (from === blob.size_bytes) continue;
    if (blob.content_base64 !== undefined) {
      await publishOutput(deps, jobId, stream, Buffer.from(blob.content_base64, 'base64').subarray(from));
    } else {
      publishLoss(deps, jobId, stream, 'not_buffered', blob.size_bytes - from);
    }
  }
}
