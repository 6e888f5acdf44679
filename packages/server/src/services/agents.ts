import { KilnError, newId, toRfc3339, type Agent, type AgentStatus } from '@kiln/core';
import { agentMachine } from '../domain/machines.js';
import { assertTransition } from '../domain/state-machine.js';
import { findAgent, insertAgent, listAgents, setAgentStatus } from '../store/agents.js';
import { stopOwnerWork, type StoppedWorkResult } from '../store/owner-work.js';
import { notFound, requireTenantActive, requireTenantAdmin } from './access.js';
import { auditSuccess } from './audit.js';
import type { Principal, ServiceDeps } from './context.js';
import { announceStoppedWork } from './stop-work.js';

export async function createAgent(
  deps: ServiceDeps,
  principal: Principal,
  input: { name: string; type: string },
): Promise<Agent> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  const nowMs = deps.clock.nowMs();
  const agent: Agent = {
    id: newId('agent', nowMs),
    tenant_id: tenantId,
    name: input.name,
    type: input.type,
    status: agentMachine.initial,
    created_at: toRfc3339(nowMs),
  };
  return deps.store.transaction(async (tx) => {
    await insertAgent(tx, agent);
    await auditSuccess(deps, tx, principal, {
      action: 'agent.create',
      resource_type: 'agent',
      resource_id: agent.id,
      subject_agent_id: agent.id,
      details: { name: agent.name, type: agent.type },
    });
    return agent;
  });
}

export async function getAgent(deps: ServiceDeps, principal: Principal, id: string): Promise<Agent> {
  const tenantId = requireTenantAdmin(principal);
  const agent = await findAgent(deps.store, tenantId, id);
  if (!agent) throw notFound('agent', id);
  return agent;
}

export async function listTenantAgents(
  deps: ServiceDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined },
) {
  return listAgents(deps.store, requireTenantAdmin(principal), query);
}

/**
 * Disables or enables an agent; a disabled agent's keys are refused from the next request on.
 * Disabling cancels the agent's queued jobs, stops its running ones (their runners are woken and kill
 * the sandboxes within a second) and terminates its sessions and services, in the same transaction as
 * the change and its one audit event (with the counts). The claim never hands out a disabled agent's job.
 */
export async function changeAgentStatus(
  deps: ServiceDeps,
  principal: Principal,
  id: string,
  status: AgentStatus,
): Promise<Agent> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  let stopped: StoppedWorkResult | undefined;
  const changed = await deps.store.transaction(async (tx) => {
    const agent = await findAgent(tx, tenantId, id);
    if (!agent) throw notFound('agent', id);
    assertTransition(agentMachine, agent.status, status, id);
    if (!(await setAgentStatus(tx, id, agent.status, status))) {
      throw new KilnError('CONFLICT', `agent ${id} changed while this request ran; read it again`);
    }
    stopped = status === 'disabled' ? await stopOwnerWork(tx, { agentId: id }, 'agent_disabled', toRfc3339(deps.clock.nowMs())) : undefined;
    await auditSuccess(deps, tx, principal, {
      action: status === 'disabled' ? 'agent.disable' : 'agent.enable',
      resource_type: 'agent',
      resource_id: id,
      subject_agent_id: id,
      details: { from: agent.status, to: status, ...stopped?.effects },
    });
    return { ...agent, status };
  });
  if (stopped) announceStoppedWork(deps, stopped);
  return changed;
}
