import { jobMachine, serviceMachine, sessionMachine } from '../domain/machines.js';
import { sourcesOf } from '../domain/state-machine.js';
import type { TxHandle } from './store.js';

/** Whose work is stopped: a suspended tenant's, or a disabled agent's. */
export type WorkOwner = { tenantId: string } | { agentId: string };

/** Why: also the canceled jobs' `error`. */
export type StopReason = 'tenant_suspended' | 'agent_disabled';

/** What stopping the work did, as counts (the audit records these, one event for the whole change). */
export interface StoppedWork {
  /** queued jobs canceled */
  canceled_jobs: number;
  /** running jobs canceled: their runners kill the sandboxes and report */
  stopped_jobs: number;
  terminated_sessions: number;
  terminated_services: number;
}

/** The runners that hold a stopped job: each must be woken so its heartbeat learns to kill the sandbox. */
export interface StoppedWorkResult {
  effects: StoppedWork;
  runnerIds: string[];
}

/**
 * Stops an owner's work in the caller's transaction: its queued and running jobs become canceled
 * (verdict `canceled`, `error` the reason) exactly as a user's cancel leaves them, so the runner holding
 * a running one is told `stop: canceled` by its heartbeat, kills the sandbox and reports; its sessions
 * and services are terminated. Source states come from the transition tables, so a state from which the
 * move is illegal is never written over.
 *
 * Queued and running jobs change in ONE statement: on PostgreSQL a job a claim leases while this runs is
 * waited for and then seen as running, so it is canceled too, never left to run.
 */
export async function stopOwnerWork(tx: TxHandle, owner: WorkOwner, reason: StopReason, nowIso: string): Promise<StoppedWorkResult> {
  const column = 'tenantId' in owner ? 'tenant_id' : 'agent_id';
  const id = 'tenantId' in owner ? owner.tenantId : owner.agentId;
  const jobs = await tx.db
    .updateTable('jobs')
    .set({ status: 'canceled', verdict: 'canceled', completed_at: nowIso, lease_expires_at: null, updated_at: nowIso, error: reason })
    .where(column, '=', id)
    .where('status', 'in', sourcesOf(jobMachine, 'canceled'))
    // A queued job has no runner; a running one keeps its runner, which still reports.
    .returning(['runner_id'])
    .execute();
  const sessions = await tx.db
    .updateTable('sessions')
    .set({ status: 'terminated', ended_at: nowIso, reason })
    .where(column, '=', id)
    .where('status', 'in', sourcesOf(sessionMachine, 'terminated'))
    .executeTakeFirst();
  const services = await tx.db
    .updateTable('services')
    .set({ status: 'terminated', stopped_at: nowIso, reason })
    .where(column, '=', id)
    .where('status', 'in', sourcesOf(serviceMachine, 'terminated'))
    .executeTakeFirst();
  const runnerIds = jobs.flatMap((j) => (j.runner_id === null ? [] : [j.runner_id]));
  return {
    effects: {
      canceled_jobs: jobs.length - runnerIds.length,
      stopped_jobs: runnerIds.length,
      terminated_sessions: Number(sessions.numUpdatedRows),
      terminated_services: Number(services.numUpdatedRows),
    },
    runnerIds: [...new Set(runnerIds)],
  };
}
