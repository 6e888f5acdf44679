import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Job } from '@kiln/core';
import type { JobRow } from '../store/jobs.js';
import type { Principal } from '../services/context.js';
import type { JobDeps } from '../services/job-deps.js';
import { isTerminalStatus, jobFromRow } from '../services/job-views.js';
import { findTenantJob } from '../services/jobs.js';
import { topics } from '../services/notifier.js';

/**
 * Nothing more will happen to the job: it is terminal and either reported, or canceled with no report
 * pending (never leased, or its runner was lost: recovery clears `runner_id`).
 */
function isSettled(job: JobRow): boolean {
  if (!isTerminalStatus(job.status)) return false;
  return job.output_refs !== null || (job.status === 'canceled' && job.runner_id === null);
}

type JobMessage =
  | { type: 'status'; job: Job }
  | { type: 'end'; job: Job }
  | { type: 'output'; seq: number; stream: 'stdout' | 'stderr'; data: string };

/**
 * Streams a job as server-sent events: `status` now and on every change, `output` chunks as the sandbox
 * produces them, and `end` with the final job. Output is live only: chunks produced before the client
 * connected are in the job's stdout/stderr artifacts. The database is re-read every few seconds too, so
 * a lost wake-up delays the end, never loses it.
 */
export async function streamJobEvents(
  deps: JobDeps,
  principal: Principal,
  jobId: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const pending: JobMessage[] = [];
  let deliver: ((m: JobMessage) => void) | undefined;
  const unsubscribe = deps.notifier.subscribe(topics.job(jobId), (payload) => {
    const message = payload as JobMessage;
    if (deliver) deliver(message);
    else pending.push(message);
  });
  let row;
  try {
    row = await findTenantJob(deps, principal, jobId);
  } catch (err) {
    unsubscribe();
    throw err;
  }

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let ended = false;
  const timers: NodeJS.Timeout[] = [];
  const finish = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    deps.shutdown.removeEventListener('abort', finish);
    for (const t of timers) clearInterval(t);
    res.end();
  };
  const send = (event: string, data: unknown) => {
    if (!ended) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let lastSeq = 0;
  deliver = (m) => {
    if (m.type === 'output') {
      if (m.seq <= lastSeq) return;
      lastSeq = m.seq;
      send('output', { stream: m.stream, data: m.data });
    }
    else if (m.type === 'status') send('status', m.job);
    else {
      send('end', m.job);
      finish();
    }
  };

  send('status', jobFromRow(row));
  if (isSettled(row)) {
    for (const chunk of deps.liveOutput.since(jobId)) deliver({ type: 'output', ...chunk });
    send('end', jobFromRow(row));
    finish();
    return reply;
  }
  // Output produced before this watcher connected, then whatever arrived while it was being read.
  for (const chunk of deps.liveOutput.since(jobId)) deliver({ type: 'output', ...chunk });
  for (const m of pending.splice(0)) deliver(m);
  timers.push(
    setInterval(() => {
      void findTenantJob(deps, principal, jobId)
        .then((latest) => {
          if (isSettled(latest)) {
            send('end', jobFromRow(latest));
            finish();
          }
        })
        .catch(() => finish());
    }, 2000),
    setInterval(() => !ended && res.write(': keep-alive\n\n'), 15_000),
  );
  request.raw.once('close', finish);
  if (deps.shutdown.aborted) finish();
  else deps.shutdown.addEventListener('abort', finish, { once: true });
  return reply;
}
