import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Job, OutputLossReason, OutputTruncatedNotice } from '@kiln/core';
import type { Principal } from '../services/context.js';
import type { JobDeps } from '../services/job-deps.js';
import { jobFromRow } from '../services/job-views.js';
import { isSettled, type JobMessage } from '../services/job-watchers.js';
import { findTenantJob } from '../services/jobs.js';
import { isOutputLoss, type OutputItem } from '../services/live-output.js';
import type { JobRow } from '../store/jobs.js';
import { openEventStream, SseWriter } from './sse-writer.js';

const KEEP_ALIVE_MS = 15_000;
/** Replayed chunks written per turn of the event loop (~32 KiB). */
const REPLAY_ITEMS_PER_TURN = 16;

function notice(reason: OutputLossReason, fields: Partial<OutputTruncatedNotice> = {}): OutputTruncatedNotice {
  const continues = reason !== 'slow_watcher';
  return {
    reason,
    stream: null,
    dropped_bytes: null,
    live_output_continues: continues,
    detail:
      `live output is incomplete (${reason})${continues ? '' : '; no more output is sent on this stream'}: ` +
      "the job's whole output is in its stdout and stderr artifacts, named by output_refs of the end event " +
      '(GET /v1/artifacts/{id}/content)',
    ...fields,
  };
}

/**
 * Streams a job as server-sent events: `status` now and on every change, `output` chunks as the sandbox
 * produces them, `truncated` when live output is incomplete (and why), and `end` with the final job.
 * Chunks produced before the client connected are replayed from this replica's live buffer; the job's
 * stdout/stderr artifacts hold everything. A slow reader is cut to `truncated` instead of being buffered
 * without bound, and watchers are capped per job, key and tenant (429 RATE_LIMITED).
 */
export async function streamJobEvents(
  deps: JobDeps,
  principal: Principal,
  jobId: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const row = await findTenantJob(deps, principal, jobId);
  // Refused before anything is written, so the refusal is an ordinary problem+json answer.
  const ticket = deps.watchers.admit(jobId, principal);

  const res = openEventStream(reply);
  const writer = new SseWriter(res, {
    maxBufferedBytes: deps.streams.watcherBufferBytes,
    stallTimeoutMs: deps.streams.stallTimeoutMs,
    cutNotice: { event: 'truncated', data: notice('slow_watcher') },
    onCut: (bytes) => deps.liveOutput.recordLoss(jobId, 'slow_watcher', bytes, true),
    onDropped: (bytes) => deps.liveOutput.recordLoss(jobId, 'slow_watcher', bytes, false),
  });

  let ended = false;
  let leave = () => {};
  const keepAlive = setInterval(() => writer.keepAlive(), KEEP_ALIVE_MS);
  const finish = () => {
    if (ended) return;
    ended = true;
    leave();
    clearInterval(keepAlive);
    deps.shutdown.removeEventListener('abort', finish);
    writer.end();
  };
  // The place among the watchers is held until the connection is gone, not only until the end is sent:
  // a reader that never reads still holds memory until the stall timeout closes it.
  res.once('close', () => {
    finish();
    ticket.release();
  });

  // The last number seen from each replica that numbers this job's output (see LiveOutput.origin).
  const local = deps.liveOutput.origin;
  const lastSeqs = new Map<string, number>();
  const lastSeqOf = (origin: string) => lastSeqs.get(origin) ?? 0;
  // Numbers were skipped: this replica does not hold what came before (or its buffer was full).
  const gap = (origin: string) =>
    writer.output('truncated', notice(origin === local && deps.liveOutput.droppedAny(jobId) ? 'live_buffer_full' : 'not_buffered'), 0);
  const deliverItem = (item: OutputItem, origin = local) => {
    const last = lastSeqOf(origin);
    if (item.seq <= last) return;
    if (item.seq > last + 1) gap(origin);
    lastSeqs.set(origin, item.seq);
    if (isOutputLoss(item)) {
      writer.output('truncated', notice(item.reason, { stream: item.stream, dropped_bytes: item.lost_bytes }), 0);
    } else {
      writer.output('output', { stream: item.stream, data: item.data }, item.data.length);
    }
  };
  // Replayed in turns, so a late watcher's replay does not land in its buffer all at once; live output
  // meanwhile is in the live buffer (or counted as not kept), and the end waits for the replay.
  let replaying = true;
  let deferredEnd: Job | undefined;
  const deliver = (m: JobMessage) => {
    if (ended) return;
    if (m.type === 'output' || m.type === 'lost') {
      if (replaying) return;
      const { type: _type, origin, ...item } = m;
      deliverItem(item, origin);
    } else if (m.type === 'status') {
      writer.control('status', m.job);
    } else if (replaying) {
      deferredEnd = m.job;
    } else {
      writer.control('end', m.job);
      finish();
    }
  };
  const replay = async (settled: JobRow | undefined) => {
    let replayed = 0;
    for (;;) {
      const items = deps.liveOutput.since(jobId, lastSeqOf(local)).slice(0, REPLAY_ITEMS_PER_TURN);
      if (items.length === 0 || ended || writer.isCut) break;
      for (const item of items) deliverItem(item);
      replayed += items.length;
      await nextTurn();
    }
    replaying = false;
    // Output produced during the replay that the buffer could not keep is missing for this watcher.
    if (!ended && !writer.isCut && deps.liveOutput.lastSeq(jobId) > lastSeqOf(local)) {
      gap(local);
      lastSeqs.set(local, deps.liveOutput.lastSeq(jobId));
    }
    // An ended job whose output this replica no longer holds: say where it is unless the end carries it.
    if (settled && replayed === 0 && settled.output_refs !== null && (settled.stdout_inline === null || settled.stderr_inline === null)) {
      writer.output('truncated', notice('not_buffered'), 0);
    }
    if (deferredEnd) deliver({ type: 'end', job: deferredEnd });
  };

  writer.control('status', jobFromRow(row));
  if (isSettled(row)) {
    deferredEnd = jobFromRow(row);
    void replay(row);
    return reply;
  }
  // From here to the first read of the live buffer nothing awaits, so no message falls between the two.
  leave = deps.watchers.watch(jobId, { deliver, close: finish, bufferedBytes: () => writer.bufferedBytes });
  void replay(undefined);
  if (deps.shutdown.aborted) finish();
  else deps.shutdown.addEventListener('abort', finish, { once: true });
  return reply;
}
