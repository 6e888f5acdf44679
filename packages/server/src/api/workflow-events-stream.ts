import type { FastifyReply } from 'fastify';
import type { WorkflowStep } from '@kiln/core';
import type { Principal } from '../services/context.js';
import type { JobDeps } from '../services/job-deps.js';
import type { JobMessage } from '../services/job-watchers.js';
import { isOutputLoss } from '../services/live-output.js';
import { pendingWake, topics } from '../services/notifier.js';
import { findTenantWorkflow, stepsWithJobs, stepView, workflowView } from '../services/workflows/queries.js';
import { openEventStream, SseWriter } from './sse-writer.js';

const KEEP_ALIVE_MS = 15_000;
/** The safety net for a lost wake-up: the workflow is read again at least this often. */
const RECHECK_MS = 1000;

const ENDED = new Set(['succeeded', 'failed', 'canceled']);

/** What the stream knows of one step's job: its live output is followed through the jobs' watch hub. */
interface FollowedJob {
  leave: () => void;
  lastSeq: number;
  streamed: boolean;
}

/**
 * Streams a workflow as server-sent events: `workflow` now, `step` on every step status change,
 * `output` chunks of each step's job as its sandbox produces them (`{ step, job_id, stream, data }`,
 * followed through the jobs' watch hub and live buffer, as a job's own stream is; a step that ended
 * before it could be followed gives its inline stdout/stderr instead), `truncated` when a step's live
 * output is incomplete, then `end` with the whole workflow. Admitted and capped by the same hub (per
 * workflow, key and tenant) and written through the same back-pressured SSE writer.
 */
export async function streamWorkflowEvents(deps: JobDeps, principal: Principal, workflowId: string, reply: FastifyReply): Promise<FastifyReply> {
  const row = await findTenantWorkflow(deps.store, principal, workflowId);
  const ticket = deps.watchers.admit(workflowId, principal);
  const res = openEventStream(reply);
  const writer = new SseWriter(res, {
    maxBufferedBytes: deps.streams.watcherBufferBytes,
    stallTimeoutMs: deps.streams.stallTimeoutMs,
    cutNotice: { event: 'truncated', data: { reason: 'slow_watcher', detail: "no more output on this stream: read the steps' jobs' stdout/stderr artifacts" } },
    onCut: () => {},
    onDropped: () => {},
  });
  const closed = new AbortController();
  const keepAlive = setInterval(() => writer.keepAlive(), KEEP_ALIVE_MS);
  const onShutdown = () => closed.abort();
  deps.shutdown.addEventListener('abort', onShutdown, { once: true });
  res.once('close', () => {
    closed.abort();
    ticket.release();
  });

  // A job's status change (its lease) wakes the loop at once, as a workflow change does.
  let kick = () => {};
  const followed = new Map<string, FollowedJob>();
  const follow = (stepName: string, jobId: string) => {
    const state: FollowedJob = { leave: () => {}, lastSeq: 0, streamed: false };
    const chunk = (seq: number, stream: 'stdout' | 'stderr', data: string) => {
      if (seq <= state.lastSeq) return;
      state.lastSeq = seq;
      state.streamed = true;
      writer.output('output', { step: stepName, job_id: jobId, stream, data }, data.length);
    };
    const deliver = (m: JobMessage) => {
      if (m.type === 'output') chunk(m.seq, m.stream, m.data);
      else if (m.type === 'lost') writer.output('truncated', { step: stepName, job_id: jobId, reason: m.reason, stream: m.stream }, 0);
      else kick();
    };
    state.leave = deps.watchers.watch(jobId, { deliver, close: () => kick(), bufferedBytes: () => writer.bufferedBytes });
    // What this replica holds of output produced before the stream followed the job.
    for (const item of deps.liveOutput.since(jobId, 0)) {
      if (isOutputLoss(item)) writer.output('truncated', { step: stepName, job_id: jobId, reason: item.reason, stream: item.stream }, 0);
      else chunk(item.seq, item.stream, item.data);
    }
    followed.set(jobId, state);
  };

  writer.control('workflow', workflowView(row));
  const sent = new Map<string, string>();
  void (async () => {
    try {
      while (!closed.signal.aborted) {
        const { wake, cancel } = pendingWake(deps.notifier, topics.workflow(workflowId), RECHECK_MS, closed.signal);
        const kicked = new Promise<void>((resolve) => (kick = resolve));
        try {
          const current = await findTenantWorkflow(deps.store, principal, workflowId);
          const views: WorkflowStep[] = [];
          for (const { step, job } of await stepsWithJobs(deps.store, workflowId)) {
            const view = stepView(step, job);
            views.push(view);
            if (job && !ENDED.has(view.status) && !followed.has(job.id)) follow(view.name, job.id);
            if (sent.get(view.id) === view.status) continue;
            sent.set(view.id, view.status);
            writer.control('step', view);
            if (!ENDED.has(view.status) || !job) continue;
            const state = followed.get(job.id);
            state?.leave();
            // Never followed live (or nothing came live): the output the job keeps inline.
            if (!state?.streamed) {
              if (job.stdout_inline) writer.output('output', { step: view.name, job_id: job.id, stream: 'stdout', data: job.stdout_inline }, job.stdout_inline.length);
              if (job.stderr_inline) writer.output('output', { step: view.name, job_id: job.id, stream: 'stderr', data: job.stderr_inline }, job.stderr_inline.length);
            }
          }
          if (ENDED.has(current.status)) {
            writer.control('end', workflowView(current, views));
            break;
          }
          await Promise.race([wake, kicked]);
        } finally {
          cancel();
        }
      }
    } catch {
      // The workflow vanished or the store failed: the stream ends; the client reads the workflow.
    } finally {
      for (const state of followed.values()) state.leave();
      clearInterval(keepAlive);
      deps.shutdown.removeEventListener('abort', onShutdown);
      writer.end();
    }
  })();
  return reply;
}
