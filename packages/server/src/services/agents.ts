import { KilnError, newId, toRfc3339, type Agent, type AgentStatus } from '@kiln/core';
import { agentMachine } from '../domain/machines.js';
import { assertTransition } from '../domain/state-machine.js';
import { findAgent, insertAgent, listAgents, setAgentStatus } from '../store/agents.js';
import { notFound, requireTenantActive, requireTenantAdmin } from './access.js';
import { auditSuccess } from './audit.js';
import { actorIdOf, type Principal, type ServiceDeps } from './context.js';
import { activeSessionsOfAgent } from '../store/sessions.js';
import { endSessionsFor } from './sessions/lifecycle.js';

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

/** Disables or enables an agent; a disabled agent's keys are refused from the next request on. */
export async function changeAgentStatus(
  deps: ServiceDeps,
  principal: Principal,
  id: string,
  status: AgentStatus,
): Promise<Agent> {
  const tenantId = requireTenantAdmin(principal);
  requireTenantActive(principal);
  return deps.store.transaction(async (tx) => {
    const agent = await findAgent(tx, tenantId, id);
    if (!agent) throw notFound('agent', id);
    assertTransition(agentMachine, agent.status, status, id);
    if (!(await setAgentStatus(tx, id, agent.status, status))) {
      throw new KilnError('CONFLICT', `agent ${id} changed while this request ran; read it again`);
    }
    // A disabled agent's sessions end with it; the session reaper destroys their sandboxes.
    const endedSessions =
      status === 'disabled'
        ? await endSessionsFor(tx, await activeSessionsOfAgent(tx, id), 'agent_disabled', actorIdOf(principal), deps.clock.nowMs())
        : 0;
    await auditSuccess(deps, tx, principal, {
      action: status === 'disabled' ? 'agent.disable' : 'agent.enable',
      resource_type: 'agent',
      resource_id: id,
      subject_agent_id: id,
      details: { from: agent.status, to: status, ...(status === 'disabled' ? { terminated_sessions: endedSessions } : {}) },
    });
    return { ...agent, status };
  });
}
