import { egressSummarySchema, type EgressSummary } from '@kiln/core';
import { appendAuditEvent } from '../store/audit.js';
import type { TxHandle } from '../store/store.js';
import { egressAuditDetails } from './job-completion.js';

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
