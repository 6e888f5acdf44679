import { KilnError, toRfc3339, type Workflow, type WorkflowStep, type WorkflowStepStatus } from '@kiln/core';
import { moveJob, type JobRow } from '../../store/jobs.js';
import { decodeCursor, page } from '../../store/pagination.js';
import type { DbHandle } from '../../store/store.js';
import { getWorkflow, jobsOfSteps, lockWorkflow, moveWorkflow, stepsOf, type WorkflowRow, type WorkflowStepRow } from '../../store/workflows.js';
import { notFound, requireTenantActive, requireTenantMember } from '../access.js';
import { auditSuccess } from '../audit.js';
import { actorIdOf, type Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { jobFromRow } from '../job-views.js';
import { visibleToAgent } from '../jobs.js';
import { topics } from '../notifier.js';
import { endStep, stepSpecOf, WorkflowWakes } from './engine.js';

/** A step as the API answers it: while it has a job that has not ended, its status is its job's. */
export function stepView(step: WorkflowStepRow, job: JobRow | undefined): WorkflowStep {
  const spec = stepSpecOf(step);
  const ended = step.status === 'succeeded' || step.status === 'failed' || step.status === 'canceled';
  const status = (!ended && job && (job.status === 'queued' || job.status === 'running') ? job.status : step.status) as WorkflowStepStatus;
  return {
    id: step.id,
    workflow_id: step.workflow_id,
    sequence: step.sequence,
    name: step.name ?? String(step.sequence),
    agent_id: step.agent_id,
    policy_id: spec.job.policy_id,
    language: spec.job.language,
    needs: spec.needs,
    inputs: spec.inputs,
    continue_on_failure: spec.continue_on_failure,
    job_id: step.job_id,
    status,
    reason: step.reason,
    started_at: step.started_at,
    completed_at: step.completed_at,
  };
}

export function workflowView(row: WorkflowRow, steps?: WorkflowStep[]): Workflow {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    agent_id: row.agent_id,
    status: row.status as Workflow['status'],
    reason: row.reason,
    created_at: row.created_at,
    started_at: row.started_at,
    completed_at: row.completed_at,
    ...(steps ? { steps } : {}),
  };
}

/** A workflow the caller may see (its tenant's; an agent's own); anything else is 404 like a missing one. */
export async function findTenantWorkflow(h: DbHandle, principal: Principal, id: string): Promise<WorkflowRow> {
  const tenantId = requireTenantMember(principal);
  const row = await getWorkflow(h, id);
  if (!row || row.tenant_id !== tenantId || !visibleToAgent(principal, row.agent_id)) throw notFound('workflow', id);
  return row;
}

/** The steps of a workflow with the jobs they mirror. */
export async function stepsWithJobs(h: DbHandle, workflowId: string): Promise<{ step: WorkflowStepRow; job: JobRow | undefined }[]> {
  const steps = await stepsOf(h, workflowId);
  const jobs = await jobsOfSteps(h, steps);
  return steps.map((step) => ({ step, job: step.job_id ? jobs.get(step.job_id) : undefined }));
}

export async function getTenantWorkflow(deps: JobDeps, principal: Principal, id: string): Promise<Workflow> {
  const row = await findTenantWorkflow(deps.store, principal, id);
  const steps = await stepsWithJobs(deps.store, id);
  return workflowView(row, steps.map((s) => stepView(s.step, s.job)));
}

export async function listTenantWorkflows(
  deps: JobDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined; status?: string | undefined },
) {
  const tenantId = requireTenantMember(principal);
  const after = decodeCursor(query.cursor);
  let q = deps.store.db.selectFrom('workflows').selectAll().where('tenant_id', '=', tenantId).orderBy('id', 'desc').limit(query.limit + 1);
  if (after) q = q.where('id', '<', after);
  if (query.status) q = q.where('status', '=', query.status);
  if (principal.kind === 'agent') q = q.where('agent_id', '=', principal.agentId);
  const result = page(await q.execute(), query.limit);
  return { items: result.items.map((row) => workflowView(row)), next_cursor: result.next_cursor };
}

/**
 * Cancels a workflow: what has not started is canceled, running jobs are canceled (their runners kill
 * the sandboxes), and the workflow ends canceled, all in one transaction. An ended workflow answers 409.
 */
export async function cancelWorkflow(deps: JobDeps, principal: Principal, id: string): Promise<Workflow> {
  requireTenantActive(principal);
  const nowMs = deps.clock.nowMs();
  const nowIso = toRfc3339(nowMs);
  const wakes = new WorkflowWakes();
  const canceledJobs: JobRow[] = [];
  await deps.store.transaction(async (tx) => {
    await findTenantWorkflow(tx, principal, id);
    const workflow = (await lockWorkflow(tx, id))!;
    const reason = `canceled by ${actorIdOf(principal)}`;
    if (!(await moveWorkflow(tx, workflow, 'canceled', { reason }, nowMs))) {
      throw new KilnError('CONFLICT', `workflow ${id} changed while it was being canceled; read it and try again`);
    }
    for (const { step, job } of await stepsWithJobs(tx, id)) {
      if (step.status === 'succeeded' || step.status === 'failed' || step.status === 'canceled') continue;
      if (job && (job.status === 'queued' || job.status === 'running')) {
        const values = { verdict: 'canceled', completed_at: nowIso, lease_expires_at: null };
        if (await moveJob(tx, job, 'canceled', values, nowMs)) canceledJobs.push({ ...job, ...values, status: 'canceled' });
      }
      await endStep(tx, workflow, step, 'canceled', reason, nowMs);
    }
    await auditSuccess(deps, tx, principal, {
      action: 'workflow.cancel',
      resource_type: 'workflow',
      resource_id: id,
      subject_agent_id: workflow.agent_id,
      details: { from: workflow.status, jobs_canceled: canceledJobs.length },
    });
    wakes.workflows.add(id);
  });
  for (const job of canceledJobs) {
    if (job.runner_id) wakes.runners.add(job.runner_id);
    deps.notifier.publish(topics.job(job.id), { type: job.runner_id ? 'status' : 'end', job: jobFromRow(job) });
  }
  wakes.publish(deps);
  return getTenantWorkflow(deps, principal, id);
}
