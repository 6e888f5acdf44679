import { egressSummarySchema, KilnError, type EgressSummary } from '@kiln/core';
import { appendAuditEvent } from '../store/audit.js';
import { markSessionSandbox } from '../store/sessions.js';
import type { TxHandle } from '../store/store.js';
import type { JobDeps } from './job-deps.js';
import { egressAuditDetails } from './job-completion.js';
import { callRunner, type RunnerEndpoint } from './sessions/runner-link.js';

/** What a persistent sandbox (a session's or a service's) is for, as its `egress.deny` event names it. */
export interface EgressOwner {
  resource_type: 'session' | 'service';
  id: string;
  tenant_id: string;
  agent_id: string | null;
}

/**
 * The egress summary a runner answered when it destroyed a persistent sandbox. Older runners answer
 * none; a malformed one is not worth failing the destroy for.
 */
export function destroyedSandboxEgress(answer: unknown): EgressSummary | null {
  return egressSummarySchema.safeParse((answer as { egress?: unknown } | null)?.egress).data ?? null;
}

/**
 * A persistent sandbox's refused connections, in aggregate, once it is gone: one `egress.deny` event
 * however many it tried (nothing when it was refused nothing).
 */
export async function auditEgressDenials(tx: TxHandle, owner: EgressOwner, runnerId: string, egress: EgressSummary | null, nowMs: number): Promise<void> {
  if (!egress || egress.connections_denied === 0) return;
  await appendAuditEvent(
    tx,
    {
      tenant_id: owner.tenant_id,
      actor_id: runnerId,
      action: 'egress.deny',
      resource_type: owner.resource_type,
      resource_id: owner.id,
      subject_agent_id: owner.agent_id,
      outcome: 'denied',
      details: { actor_kind: 'runner', ...egressAuditDetails(egress) },
    },
    nowMs,
  );
}

/**
 * Destroys a session's or a service's sandbox on its runner (best effort: the reaper and the reconciler
 * retry on false) and records it: the sandbox row terminated, its refused connections audited in
 * aggregate. A runner that no longer knows the sandbox counts as destroyed.
 */
export async function destroyPersistentSandbox(
  deps: JobDeps,
  kind: EgressOwner['resource_type'],
  owner: { id: string; sandbox_id: string | null },
  runner: RunnerEndpoint,
  loadOwner: (id: string) => Promise<Omit<EgressOwner, 'resource_type'> | undefined>,
): Promise<boolean> {
  let egress: EgressSummary | null = null;
  try {
    egress = destroyedSandboxEgress(await (await callRunner(runner, 'DELETE', `/v1/${kind}s/${owner.id}`, undefined)).json());
  } catch (err) {
    if (!(err instanceof KilnError && err.code === 'NOT_FOUND')) return false;
  }
  const denied = egress && egress.connections_denied > 0 ? await loadOwner(owner.id) : undefined;
  await deps.store.transaction(async (tx) => {
    if (owner.sandbox_id) await markSessionSandbox(tx, owner.sandbox_id, 'terminated', deps.clock.nowMs());
    if (denied) {
      await auditEgressDenials(tx, { resource_type: kind, id: denied.id, tenant_id: denied.tenant_id, agent_id: denied.agent_id }, runner.id, egress, deps.clock.nowMs());
    }
  });
  if (egress) deps.events.emit({ type: 'egress', sandbox: kind, summary: egress });
  return true;
}
