import { defineMachine } from './state-machine.js';

/**
 * The transition table of every stateful entity (ARCHITECTURE.md §3). Where the architecture is silent
 * (step statuses), the choice is written here and nowhere else.
 */

export const tenantMachine = defineMachine({
  entity: 'tenant',
  states: ['active', 'suspended'] as const,
  initial: 'active',
  transitions: { active: ['suspended'], suspended: ['active'] },
});
export type TenantState = (typeof tenantMachine.states)[number];

export const agentMachine = defineMachine({
  entity: 'agent',
  states: ['active', 'disabled'] as const,
  initial: 'active',
  transitions: { active: ['disabled'], disabled: ['active'] },
});
export type AgentState = (typeof agentMachine.states)[number];

export const jobMachine = defineMachine({
  entity: 'job',
  states: ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const,
  initial: 'queued',
  transitions: {
    // running → queued: a lost runner's job goes back to the queue with attempt+1 (§7).
    queued: ['running', 'canceled', 'failed'],
    running: ['succeeded', 'failed', 'canceled', 'queued'],
    succeeded: [],
    failed: [],
    canceled: [],
  },
});
export type JobState = (typeof jobMachine.states)[number];

export const sessionMachine = defineMachine({
  entity: 'session',
  states: ['active', 'expired', 'terminated'] as const,
  initial: 'active',
  transitions: { active: ['expired', 'terminated'], expired: [], terminated: [] },
});
export type SessionState = (typeof sessionMachine.states)[number];

/** A session step: queued while its session is busy, then runs to an end. */
export const sessionStepMachine = defineMachine({
  entity: 'session_step',
  states: ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const,
  initial: 'queued',
  transitions: {
    queued: ['running', 'canceled'],
    running: ['succeeded', 'failed', 'canceled'],
    succeeded: [],
    failed: [],
    canceled: [],
  },
});
export type SessionStepState = (typeof sessionStepMachine.states)[number];

export const workflowMachine = defineMachine({
  entity: 'workflow',
  states: ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const,
  initial: 'queued',
  transitions: {
    queued: ['running', 'canceled'],
    running: ['succeeded', 'failed', 'canceled'],
    succeeded: [],
    failed: [],
    canceled: [],
  },
});
export type WorkflowState = (typeof workflowMachine.states)[number];

/**
 * A workflow step waits (pending) for the steps it needs; then it mirrors its job: queued, running (and
 * back to queued when the job is retried), ended as the job ended. A step that cannot start (missing
 * input, disabled agent) fails from pending; one an earlier failure or a cancel makes pointless is canceled.
 */
export const workflowStepMachine = defineMachine({
  entity: 'workflow_step',
  states: ['pending', 'queued', 'running', 'succeeded', 'failed', 'canceled'] as const,
  initial: 'pending',
  transitions: {
    pending: ['queued', 'failed', 'canceled'],
    queued: ['running', 'succeeded', 'failed', 'canceled'],
    running: ['queued', 'succeeded', 'failed', 'canceled'],
    succeeded: [],
    failed: [],
    canceled: [],
  },
});
export type WorkflowStepState = (typeof workflowStepMachine.states)[number];

export const serviceMachine = defineMachine({
  entity: 'service',
  states: ['starting', 'running', 'stopped', 'terminated'] as const,
  initial: 'starting',
  transitions: {
    // starting → stopped: a user may stop it before it is ready; starting → terminated: suspension, a
    // failed start or a readiness timeout ends a service before it runs.
    starting: ['running', 'stopped', 'terminated'],
    running: ['stopped', 'terminated'],
    stopped: [],
    terminated: [],
  },
});
export type ServiceState = (typeof serviceMachine.states)[number];

export const runnerNodeMachine = defineMachine({
  entity: 'runner_node',
  states: ['healthy', 'degraded', 'offline'] as const,
  initial: 'healthy',
  transitions: {
    healthy: ['degraded', 'offline'],
    degraded: ['healthy', 'offline'],
    // A runner that comes back registers again and heartbeats: offline → healthy.
    offline: ['healthy'],
  },
});
export type RunnerNodeState = (typeof runnerNodeMachine.states)[number];

export const sandboxInstanceMachine = defineMachine({
  entity: 'sandbox_instance',
  states: ['provisioning', 'running', 'terminated', 'failed'] as const,
  initial: 'provisioning',
  transitions: {
    provisioning: ['running', 'terminated', 'failed'],
    running: ['terminated', 'failed'],
    terminated: [],
    failed: [],
  },
});
export type SandboxInstanceState = (typeof sandboxInstanceMachine.states)[number];

/** All ten tables, for tests and documentation. */
export const ALL_MACHINES = [
  tenantMachine,
  agentMachine,
  jobMachine,
  sessionMachine,
  sessionStepMachine,
  workflowMachine,
  workflowStepMachine,
  serviceMachine,
  runnerNodeMachine,
  sandboxInstanceMachine,
] as const;
