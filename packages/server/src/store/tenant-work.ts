import { jobMachine, serviceMachine, sessionMachine } from '../domain/machines.js';
import { sourcesOf } from '../domain/state-machine.js';
import type { TxHandle } from './store.js';

export interface SuspensionEffects {
  canceled_jobs: number;
  terminated_sessions: number;
  terminated_services: number;
}

/**
 * What suspending a tenant does to its work, in the caller's transaction: queued jobs become canceled,
 * sessions (reason `tenant_suspended`; the session reaper destroys their sandboxes) and services
 * terminated. The source states come from the transition tables, so a state from
 * which the move is illegal is never written over.
 */
export async function stopTenantWork(tx: TxHandle, tenantId: string, nowIso: string): Promise<SuspensionEffects> {
  const jobs = await tx.db
    .updateTable('jobs')
    .set({ status: 'canceled', verdict: 'canceled', completed_at: nowIso, updated_at: nowIso, error: 'tenant suspended' })
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'queued')
    .where('status', 'in', sourcesOf(jobMachine, 'canceled'))
    .executeTakeFirst();
  const sessions = await tx.db
    .updateTable('sessions')
    .set({ status: 'terminated', ended_at: nowIso, reason: 'tenant_suspended' })
    .where('tenant_id', '=', tenantId)
    .where('status', 'in', sourcesOf(sessionMachine, 'terminated'))
    .executeTakeFirst();
  const services = await tx.db
    .updateTable('services')
    .set({ status: 'terminated', stopped_at: nowIso })
    .where('tenant_id', '=', tenantId)
    .where('status', 'in', sourcesOf(serviceMachine, 'terminated'))
    .executeTakeFirst();
  return {
    canceled_jobs: Number(jobs.numUpdatedRows),
    terminated_sessions: Number(sessions.numUpdatedRows),
    terminated_services: Number(services.numUpdatedRows),
  };
}
