import type { FastifyReply } from 'fastify';
import type { WorkflowStep } from '@kiln/core';
import type { Principal } from '../services/context.js';
import type { JobDeps } from '../services/job-deps.js';
import { jobFromRow } from '../services/job-views.js';
import { pendingWake, topics } from '../services/notifier.js';
import { findTenantWorkflow, stepsWithJobs, stepView, workflowView } from '../services/workflows/queries.js';
import { openEventStream, SseWriter } from './sse-writer.js';

const KEEP_ALIVE_MS = 15_000;
/** A step's job changes status (a lease) without waking the workflow: looked at again this often. */
const RECHECK_MS = 500;

const ENDED = new Set(['succeeded', 'failed', 'canceled']);

/**
 * Streams a workflow as server-sent events: `workflow` now, `step` on every step status change,
 * `output` with each step's job when the step ends (its stdout/stderr inline when small, the artifacts
 * otherwise), then `end` with the whole workflow. Streams are admitted and capped by the jobs' watcher
 * hub (per workflow, key and tenant) and written through the same back-pressured SSE writer.
 */
export async function streamWorkflowEvents(
  deps: JobDeps,
  principal: Principal,
  workflowId: string,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const row = await findTenantWorkflow(deps.store, principal, workflowId);
  const ticket = deps.watchers.admit(workflowId, principal);
  const res = openEventStream(reply);
  const writer = new SseWriter(res, {
    maxBufferedBytes: deps.streams.watcherBufferBytes,
    stallTimeoutMs: deps.streams.stallTimeoutMs,
    cutNotice: { event: 'truncated', data: { reason: 'slow_watcher', detail: 'read GET /v1/workflows/{id} and the steps\' jobs for the rest' } },
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

  writer.control('workflow', workflowView(row));
  const sent = new Map<string, string>();
  void (async () => {
    try {
      while (!closed.signal.aborted) {
        const { wake, cancel } = pendingWake(deps.notifier, topics.workflow(workflowId), RECHECK_MS, closed.signal);
        try {
          const current = await findTenantWorkflow(deps.store, principal, workflowId);
          const steps = await stepsWithJobs(deps.store, workflowId);
          const views: WorkflowStep[] = [];
          for (const { step, job } of steps) {
            const view = stepView(step, job);
            views.push(view);
            if (sent.get(view.id) === view.status) continue;
            sent.set(view.id, view.status);
            writer.control('step', view);
            if (ENDED.has(view.status) && job) {
              const out = jobFromRow(job);
              writer.output('output', { step: view.name, job_id: job.id, job: out }, (out.stdout?.length ?? 0) + (out.stderr?.length ?? 0));
            }
          }
          if (ENDED.has(current.status)) {
            writer.control('end', workflowView(current, views));
            break;
          }
          await wake;
        } finally {
          cancel();
        }
      }
    } catch {
      // The workflow vanished (retention) or the store failed: the stream ends; the client reads the workflow.
    } finally {
      clearInterval(keepAlive);
      deps.shutdown.removeEventListener('abort', onShutdown);
      writer.end();
    }
  })();
  return reply;
}
