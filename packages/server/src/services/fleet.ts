import type { PlaneEvent } from './plane-events.js';
import type { RunnerNode, SandboxInstance } from '@kiln/core';
import {
  getRunner,
  listRunners,
  listSandboxes,
  runnerFromRow,
  sandboxFromRow,
  setRunnerCredential,
  setRunnerDraining,
  sweepRunnerLiveness,
} from '../store/fleet.js';
import { expiredLeases, requeueOrFail } from '../store/jobs.js';
import { appendAuditEvent } from '../store/audit.js';
import { decodeCursor, page } from '../store/pagination.js';
import { notFound, requireOperator } from './access.js';
import { findTenantJob } from './jobs.js';
import { loadVisibleSession } from './sessions/lifecycle.js';
import { auditSuccess } from './audit.js';
import type { Principal } from './context.js';
import type { JobDeps } from './job-deps.js';
import { topics } from './notifier.js';
import { startReaper } from './reaper.js';
import { recoverRunnerWork, recoveryEvent } from './runner-protocol.js';
import { dropEndedSecretEnv } from './secret-env.js';
import { advanceWorkflowOfJob, WorkflowWakes } from './workflows/engine.js';

export async function listFleet(deps: JobDeps, principal: Principal, query: { limit: number; cursor?: string | undefined }) {
  requireOperator(principal);
  const rows = await listRunners(deps.store, { limit: query.limit, after: decodeCursor(query.cursor) });
  const result = page(rows, query.limit);
  return { items: result.items.map(runnerFromRow), next_cursor: result.next_cursor };
}

export async function getFleetRunner(deps: JobDeps, principal: Principal, id: string): Promise<RunnerNode> {
  requireOperator(principal);
  const row = await getRunner(deps.store, id);
  if (!row) throw notFound('runner', id);
  return runnerFromRow(row);
}

/** Drains a runner: it takes no new work; what it runs finishes. */
export async function drainRunner(deps: JobDeps, principal: Principal, id: string): Promise<RunnerNode> {
  requireOperator(principal);
  const row = await deps.store.transaction(async (tx) => {
    const found = await getRunner(tx, id);
    if (!found) throw notFound('runner', id);
    await setRunnerDraining(tx, id, true);
    await auditSuccess(deps, tx, principal, { action: 'runner.drain', resource_type: 'runner', resource_id: id, tenant_id: null });
    return { ...found, draining: 1 };
  });
  deps.notifier.publish(topics.runner(id));
  return runnerFromRow(row);
}

/**
 * Revokes a runner's credential (a leaked or retired node): its calls get 401 at once, and its name is
 * free for the join token, so a node holding the join token registers again and gets a new credential.
 * What it held is recovered as for an offline runner once its leases run out.
 */
export async function revokeRunnerCredential(deps: JobDeps, principal: Principal, id: string): Promise<RunnerNode> {
  requireOperator(principal);
  const row = await deps.store.transaction(async (tx) => {
    const found = await getRunner(tx, id);
    if (!found) throw notFound('runner', id);
    await setRunnerCredential(tx, id, null);
    await auditSuccess(deps, tx, principal, { action: 'runner.credential_revoke', resource_type: 'runner', resource_id: id, tenant_id: null });
    return found;
  });
  deps.notifier.publish(topics.runner(id));
  return runnerFromRow(row);
}

export async function listFleetSandboxes(
  deps: JobDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined; job_id?: string | undefined; session_id?: string | undefined; runner_id?: string | undefined; status?: string | undefined },
): Promise<{ items: SandboxInstance[]; next_cursor: string | null }> {
  if (principal.kind !== 'operator') await requireOwnWorkFilter(deps, principal, query);
  const { cursor, ...filters } = query;
  const rows = await listSandboxes(deps.store, { ...filters, after: decodeCursor(cursor) });
  const result = page(rows, query.limit);
  return { items: result.items.map(sandboxFromRow), next_cursor: result.next_cursor };
}

/**
 * A tenant (or agent) lists the sandbox instances of one of its own jobs or sessions (a job's attempts,
 * a session's sandbox), never the fleet's: another tenant's or agent's job answers 404 as everywhere.
 */
async function requireOwnWorkFilter(deps: JobDeps, principal: Principal, query: { job_id?: string | undefined; session_id?: string | undefined; runner_id?: string | undefined }) {
  if (query.runner_id || (!query.job_id && !query.session_id)) {
    requireOperator(principal);
  }
  if (query.job_id) await findTenantJob(deps, principal, query.job_id);
  if (query.session_id) await loadVisibleSession(deps.store, principal, query.session_id);
}

/**
 * One pass of the fleet reaper: runners move healthy → degraded → offline by heartbeat age; an offline
 * runner's sandboxes fail and its jobs go back to the queue (or fail when out of attempts); a lease that
 * ran out on a live runner is recovered the same way. Safe to run on every replica at once.
 */
export async function sweepFleet(deps: JobDeps, livenessFromMs = 0): Promise<{ offline: number; recovered: number }> {
  const nowMs = deps.clock.nowMs();
  const wakes = new WorkflowWakes();
  const told: PlaneEvent[] = [];
  const result = await deps.store.transaction(async (tx) => {
    told.length = 0; // a retried transaction tells only what its last try did
    // Heartbeats that could not arrive while this control plane was down prove nothing: a replica that
    // just started judges liveness only once runners had a full window to reach it (sessions survive
    // a control-plane restart).
    const { offline, degraded } =
      nowMs < livenessFromMs
        ? { offline: [], degraded: [] }
        : await sweepRunnerLiveness(tx, {
            nowMs,
            degradedAfterMs: deps.fleet.degradedAfterMs,
            offlineAfterMs: deps.fleet.offlineAfterMs,
          });
    for (const runner of degraded) {
      told.push({ type: 'runner_state', runnerId: runner.id, name: runner.name, from: 'healthy', to: 'degraded', reason: 'heartbeat late' });
    }
    let recovered = 0;
    for (const runner of offline) {
      told.push({ type: 'runner_state', runnerId: runner.id, name: runner.name, from: runner.status, to: 'offline', reason: 'no heartbeat' });
      recovered += await recoverRunnerWork(tx, runner, 'runner went offline', nowMs, told, (job) =>
        advanceWorkflowOfJob(deps, tx, job.id, nowMs, wakes),
      );
      await appendAuditEvent(
        tx,
        {
          tenant_id: null,
          actor_id: 'kiln',
          action: 'runner.offline',
          resource_type: 'runner',
          resource_id: runner.id,
          outcome: 'success',
          details: { last_heartbeat_at: runner.last_heartbeat_at },
        },
        nowMs,
      );
    }
    for (const job of await expiredLeases(tx, nowMs)) {
      const outcome = await requeueOrFail(tx, job, 'lease expired', nowMs);
      told.push({ type: 'lease_expired', jobId: job.id, runnerId: job.runner_id, requeued: outcome === 'requeued' });
      told.push(recoveryEvent(job, outcome, 'lease expired', nowMs));
      await appendAuditEvent(
        tx,
        {
          tenant_id: job.tenant_id,
          actor_id: 'kiln',
          action: outcome === 'requeued' ? 'job.requeue' : 'job.fail',
          resource_type: 'job',
          resource_id: job.id,
          subject_agent_id: job.agent_id,
          outcome: 'success',
          details: { attempt: job.attempt, reason: 'lease expired' },
        },
        nowMs,
      );
      // A step's job failed for good: its workflow advances in this transaction (a requeue changes nothing there).
      if (outcome === 'failed') await advanceWorkflowOfJob(deps, tx, job.id, nowMs, wakes);
      recovered += 1;
    }
    await dropEndedSecretEnv(tx);
    return { offline: offline.length, recovered };
  });
  wakes.publish(deps);
  for (const event of told) deps.events.emit(event);
  if (result.recovered > 0) deps.notifier.publish(topics.work);
  return result;
}

/** Runs `sweepFleet` every `intervalMs` until stopped; errors are logged, never fatal. */
export function startFleetReaper(deps: JobDeps, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  const livenessFromMs = deps.clock.nowMs() + deps.fleet.offlineAfterMs;
  return startReaper(() => sweepFleet(deps, livenessFromMs), intervalMs, onError);
}
