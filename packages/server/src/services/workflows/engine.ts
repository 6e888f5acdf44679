import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { toRfc3339, WORKFLOW_LIMITS, type JobSpec, type WorkflowInput } from '@kiln/core';
import type { WorkflowStepState } from '../../domain/machines.js';
import { isStepEnded, nextMoves, type StepState } from '../../domain/workflows/plan.js';
import { findAgent } from '../../store/agents.js';
import { appendAuditEvent } from '../../store/audit.js';
import { JobFlag } from '../../domain/job-flags.js';
import { queuedJobRow, type JobRow, type NewJob } from '../../store/jobs.js';
import type { TxHandle } from '../../store/store.js';
import {
  jobsOfSteps,
  lockWorkflow,
  moveStep,
  moveWorkflow,
  stepsOf,
  workflowOfJob,
  type WorkflowRow,
  type WorkflowStepRow,
} from '../../store/workflows.js';
import type { JobDeps } from '../job-deps.js';
import { topics } from '../notifier.js';

/**
 * The workflow engine: each advance runs inside the transaction of the job end that causes it (a
 * runner's report, a cancel, a lease lost for good), so a crash either keeps both or neither; the
 * sweeper (sweeper.ts) runs the same advance for anything a crash or an unhooked path left behind.
 * A step's job is created by a conditional move of the step (pending → queued), so two advances racing
 * cannot both create it.
 */

/** What a step was frozen to at submission (workflow_steps.spec). */
export interface StepSpec {
  needs: string[];
  inputs: WorkflowInput[];
  continue_on_failure: boolean;
  /** the job as prepared (checked against its policy) at submission */
  job: NewJob;
}

/** Who submitted the workflow: the actor of its engine's audit events (workflows.spec). */
export interface WorkflowSpec {
  actor_id: string;
  actor_kind: string;
}

/** What to publish once the transaction commits (never before: a watcher must read what it is woken for). */
export class WorkflowWakes {
  readonly workflows = new Set<string>();
  /** jobs canceled that a runner holds: their runner must hear */
  readonly runners = new Set<string>();
  work = false;

  publish(deps: Pick<JobDeps, 'notifier'>): void {
    if (this.work) deps.notifier.publish(topics.work);
    for (const id of this.workflows) deps.notifier.publish(topics.workflow(id));
    for (const id of this.runners) deps.notifier.publish(topics.runner(id));
  }
}

export function stepSpecOf(step: WorkflowStepRow): StepSpec {
  return JSON.parse(step.spec ?? '{}') as StepSpec;
}

function workflowSpecOf(workflow: WorkflowRow): WorkflowSpec {
  return JSON.parse(workflow.spec ?? '{}') as WorkflowSpec;
}

/** Records an engine action of a workflow, with its submitter as the actor. */
export async function auditWorkflowAction(
  tx: TxHandle,
  workflow: WorkflowRow,
  nowMs: number,
  event: { action: string; resource_type: string; resource_id: string; subject_agent_id: string | null; details: Record<string, unknown> },
): Promise<void> {
  const actor = workflowSpecOf(workflow);
  await appendAuditEvent(
    tx,
    {
      tenant_id: workflow.tenant_id,
      actor_id: actor.actor_id ?? 'kiln',
      outcome: 'success',
      ...event,
      details: { actor_kind: actor.actor_kind ?? 'workflow_engine', workflow_id: workflow.id, ...event.details },
    },
    nowMs,
  );
}

const TERMINAL_JOB: ReadonlySet<string> = new Set(['succeeded', 'failed', 'canceled']);

/** Why a job ended badly, in a line. */
function jobReason(job: JobRow): string | null {
  if (job.status === 'succeeded') return null;
  if (job.error) return `job ${job.id}: ${job.error}`.slice(0, 1024);
  if (job.verdict) return `job ${job.id} ended with verdict ${job.verdict}`;
  return `job ${job.id} ${job.status}`;
}

/** Ends a step (if it is still as read) and audits its end. */
export async function endStep(
  tx: TxHandle,
  workflow: WorkflowRow,
  step: WorkflowStepRow,
  to: 'succeeded' | 'failed' | 'canceled',
  reason: string | null,
  nowMs: number,
): Promise<boolean> {
  if (!(await moveStep(tx, step, to, { completed_at: toRfc3339(nowMs), reason }))) return false;
  await auditWorkflowAction(tx, workflow, nowMs, {
    action: 'workflow_step.end',
    resource_type: 'workflow_step',
    resource_id: step.id,
    subject_agent_id: step.agent_id,
    details: { step: step.name, status: to, job_id: step.job_id, reason },
  });
  return true;
}

/** A reason the step cannot start, or its job's spec with its inputs placed in the workspace. */
async function stepJobSpec(
  deps: JobDeps,
  tx: TxHandle,
  workflow: WorkflowRow,
  step: WorkflowStepRow,
  steps: WorkflowStepRow[],
): Promise<{ reason: string } | { spec: JobSpec }> {
  const spec = stepSpecOf(step);
  const tenant = await tx.db.selectFrom('tenants').select('status').where('id', '=', workflow.tenant_id).executeTakeFirst();
  if (tenant?.status !== 'active') return { reason: `tenant ${workflow.tenant_id} is ${tenant?.status ?? 'gone'}; the step was not started` };
  if (step.agent_id) {
    const agent = await findAgent(tx, workflow.tenant_id, step.agent_id);
    if (!agent || agent.status !== 'active') return { reason: `agent ${step.agent_id} is ${agent ? agent.status : 'gone'}; the step was not started` };
  }
  const jobSpec = JSON.parse(spec.job.request) as JobSpec;
  if (spec.inputs.length === 0) return { spec: jobSpec };
  const bounds = jobSpec.artifacts;
  const maxTotal = Math.min(bounds.max_total_bytes, WORKFLOW_LIMITS.maxInputBytesPerStep);
  if (spec.inputs.length > bounds.max_count) {
    return { reason: `the step takes ${spec.inputs.length} inputs; its policy allows ${bounds.max_count} files` };
  }
  let total = 0;
  const files = [...jobSpec.files];
  for (const input of spec.inputs) {
    const source = steps.find((s) => s.name === input.step);
    const artifact = source?.job_id
      ? await tx.db
          .selectFrom('artifacts')
          .selectAll()
          .where('owner_type', '=', 'job')
          .where('owner_id', '=', source.job_id)
          .where('name', '=', input.artifact)
          .executeTakeFirst()
      : undefined;
    if (!artifact) {
      return { reason: `input ${input.artifact} of step ${input.step} does not exist (step ${input.step} ${source?.status ?? 'unknown'})` };
    }
    const size = Number(artifact.size_bytes);
    total += size;
    if (size > bounds.max_bytes || total > maxTotal) {
      return { reason: `input ${input.artifact} of step ${input.step} (${size} bytes) is over the step's input limits (${bounds.max_bytes} bytes each, ${maxTotal} in all)` };
    }
    const content = await buffer(await deps.artifacts.open(artifact.storage_uri));
    const checksum = `sha256:${createHash('sha256').update(content).digest('hex')}`;
    if (checksum !== artifact.checksum || content.length !== size) {
      return { reason: `input ${input.artifact} of step ${input.step} does not match its checksum ${artifact.checksum}` };
    }
    const at = files.findIndex((f) => f.path === input.path);
    const file = { path: input.path, content: content.toString('base64'), encoding: 'base64' as const };
    if (at >= 0) files[at] = file;
    else files.push(file);
  }
  return { spec: { ...jobSpec, files } };
}

/** Creates the step's job (or fails the step with why it cannot start). True if the step moved. */
async function startStep(
  deps: JobDeps,
  tx: TxHandle,
  workflow: WorkflowRow,
  step: WorkflowStepRow,
  steps: WorkflowStepRow[],
  nowMs: number,
  wakes: WorkflowWakes,
): Promise<boolean> {
  const prepared = await stepJobSpec(deps, tx, workflow, step, steps);
  if ('reason' in prepared) return endStep(tx, workflow, step, 'failed', prepared.reason, nowMs);
  const job = queuedJobRow({ ...stepSpecOf(step).job, request: JSON.stringify(prepared.spec), flags: JobFlag.workflowStep }, nowMs);
  // The guard first (only one advance moves the step), then the job, then the step's reference to it.
  if (!(await moveStep(tx, step, 'queued', { started_at: toRfc3339(nowMs) }))) return false;
  await tx.db.insertInto('jobs').values(job).execute();
  await tx.db.updateTable('workflow_steps').set({ job_id: job.id }).where('id', '=', step.id).execute();
  await auditWorkflowAction(tx, workflow, nowMs, {
    action: 'workflow_step.start',
    resource_type: 'workflow_step',
    resource_id: step.id,
    subject_agent_id: step.agent_id,
    details: { step: step.name, job_id: job.id, inputs: stepSpecOf(step).inputs.length },
  });
  wakes.work = true;
  return true;
}

function stepState(step: WorkflowStepRow): StepState {
  const spec = stepSpecOf(step);
  return {
    name: step.name ?? String(step.sequence),
    status: step.status as WorkflowStepState,
    needs: spec.needs,
    continueOnFailure: spec.continue_on_failure,
    reason: step.reason,
  };
}

/**
 * Advances one workflow inside the caller's transaction: steps mirror their jobs, ended steps let the
 * next ones start, a fatal failure cancels what has not started, and the workflow ends with its last
 * step. Safe to run any number of times: each move is conditional on the state it read.
 */
export async function advanceWorkflow(deps: JobDeps, tx: TxHandle, workflowId: string, nowMs: number, wakes: WorkflowWakes): Promise<void> {
  let workflow = await lockWorkflow(tx, workflowId);
  if (!workflow || (workflow.status !== 'queued' && workflow.status !== 'running')) return;
  let changed = false;
  // Each pass moves at least one step or stops, so this ends within one pass per step (plus one).
  for (let pass = 0; pass <= WORKFLOW_LIMITS.maxSteps + 1; pass++) {
    const steps = await stepsOf(tx, workflowId);
    const jobs = await jobsOfSteps(tx, steps);
    let moved = false;
    for (const step of steps) {
      const job = step.job_id ? jobs.get(step.job_id) : undefined;
      if (!job || isStepEnded(step.status as WorkflowStepState) || job.status === step.status) continue;
      if (TERMINAL_JOB.has(job.status)) {
        moved = (await endStep(tx, workflow, step, job.status as 'succeeded' | 'failed' | 'canceled', jobReason(job), nowMs)) || moved;
      } else {
        // queued ↔ running: the step mirrors its job (a lease, a retry after a lost runner).
        moved = (await moveStep(tx, step, job.status as WorkflowStepState, {})) || moved;
      }
    }
    changed ||= moved;
    if (moved) continue;
    const moves = nextMoves(steps.map(stepState));
    for (const c of moves.cancel) {
      const step = steps.find((s) => s.name === c.name)!;
      moved = (await endStep(tx, workflow, step, 'canceled', c.reason, nowMs)) || moved;
    }
    for (const name of moves.start) {
      const step = steps.find((s) => s.name === name)!;
      moved = (await startStep(deps, tx, workflow, step, steps, nowMs, wakes)) || moved;
    }
    changed ||= moved;
    if (workflow.status === 'queued' && moves.start.length > 0) {
      await moveWorkflow(tx, workflow, 'running', { started_at: toRfc3339(nowMs) }, nowMs);
      workflow = { ...workflow, status: 'running', started_at: toRfc3339(nowMs) };
      await auditWorkflowAction(tx, workflow, nowMs, {
        action: 'workflow.start',
        resource_type: 'workflow',
        resource_id: workflow.id,
        subject_agent_id: workflow.agent_id,
        details: {},
      });
    }
    if (moved) continue;
    if (moves.end) {
      const end = moves.end;
      if (workflow.status === 'queued') {
        // Nothing could start at all: the workflow passes through running to its end.
        await moveWorkflow(tx, workflow, 'running', { started_at: toRfc3339(nowMs) }, nowMs);
        workflow = { ...workflow, status: 'running' };
      }
      if (await moveWorkflow(tx, workflow, end.status, { reason: end.reason }, nowMs)) {
        changed = true;
        await auditWorkflowAction(tx, workflow, nowMs, {
          action: 'workflow.end',
          resource_type: 'workflow',
          resource_id: workflow.id,
          subject_agent_id: workflow.agent_id,
          details: { status: end.status, reason: end.reason },
        });
      }
    }
    break;
  }
  // Watchers are woken only when something moved: a sweep that finds nothing to do stays silent.
  if (changed) wakes.workflows.add(workflowId);
}

/**
 * The advance a job end causes, in the job end's own transaction: nothing for a job that is no step.
 * Called from every place a job ends (completion, cancel, a lease lost for good).
 */
export async function advanceWorkflowOfJob(deps: JobDeps, tx: TxHandle, jobId: string, nowMs: number, wakes: WorkflowWakes): Promise<void> {
  const workflowId = await workflowOfJob(tx, jobId);
  if (workflowId) await advanceWorkflow(deps, tx, workflowId, nowMs, wakes);
}
