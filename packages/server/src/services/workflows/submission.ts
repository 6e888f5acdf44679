import {
  KilnError,
  newId,
  parseOrThrow,
  toRfc3339,
  workflowStepJobSchema,
  type CreateWorkflowRequest,
  type Workflow,
} from '@kiln/core';
import { workflowMachine } from '../../domain/machines.js';
import { checkStepReferences, resolvedNeeds } from '../../domain/workflows/plan.js';
import { appendWorkflowStep } from '../../store/steps.js';
import { requireTenantActive, requireTenantMember } from '../access.js';
import { auditSuccess } from '../audit.js';
import { actorIdOf, type Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { prepareJob, queueFull, type PreparedJob } from '../jobs.js';
import { countQueuedJobs, lockTenantForSubmission } from '../../store/quotas.js';
import { advanceWorkflow, WorkflowWakes, type StepSpec, type WorkflowSpec } from './engine.js';
import { getTenantWorkflow } from './queries.js';

/** The part of a step that is a job request: everything but the workflow's own fields. */
function jobPartOf(step: CreateWorkflowRequest['steps'][number]): Record<string, unknown> {
  const { name: _name, inputs: _inputs, needs: _needs, continue_on_failure: _cof, ...job } = step;
  return job;
}

/** A step's refusal names the step: its index and the field inside it (`body.steps.2.limits.pids`). */
function inStep(err: unknown, index: number, name: string): unknown {
  if (!(err instanceof KilnError)) return err;
  const rebase = (field: string) => (field.startsWith('body.') ? `body.steps.${index}.${field.slice(5)}` : field);
  const errors = err.errors?.map((e) => ({ ...e, field: rebase(e.field) }));
  const field = err.field === undefined ? `body.steps.${index}` : rebase(err.field);
  return new KilnError(err.code, `step ${index} (${name}): ${err.message}`, {
    field,
    ...(errors ? { errors } : {}),
    extra: { ...err.extra, step_index: index, step: name },
    cause: err,
  });
}

/** Each step checked exactly as a job submission is; the first bad step answers, with its index. */
async function prepareSteps(deps: JobDeps, principal: Principal, input: CreateWorkflowRequest): Promise<PreparedJob[]> {
  const refs = checkStepReferences(input.steps);
  if (refs) {
    throw new KilnError('VALIDATION_FAILED', `step ${refs.index}: ${refs.message}`, {
      field: `body.steps.${refs.index}.${refs.field}`,
      extra: { step_index: refs.index },
    });
  }
  const prepared: PreparedJob[] = [];
  for (const [index, step] of input.steps.entries()) {
    try {
      const job = jobPartOf(step);
      if ('secret_env' in job) {
        throw new KilnError('VALIDATION_FAILED', 'workflow steps do not take secret_env; submit a job for secrets', { field: 'body.secret_env' });
      }
      const seen = new Set<string>();
      for (const [i, put] of (step.inputs ?? []).entries()) {
        if (seen.has(put.path)) throw new KilnError('VALIDATION_FAILED', `two inputs go to ${put.path}`, { field: `body.inputs.${i}.path` });
        seen.add(put.path);
      }
      const request = parseOrThrow(workflowStepJobSchema, job, 'body');
      const ready = await prepareJob(deps, principal, request);
      const inputs = step.inputs ?? [];
      if (inputs.length > ready.policy.ruleset.artifacts.max_count) {
        throw new KilnError('POLICY_VIOLATION', `${inputs.length} inputs, above the ${ready.policy.ruleset.artifacts.max_count} files policy ${ready.policy.name} allows`, {
          field: 'body.inputs',
        });
      }
      prepared.push(ready);
    } catch (err) {
      throw inStep(err, index, step.name);
    }
  }
  return prepared;
}

/**
 * Submits a workflow: every step is checked up front (its agent, the caller's right to act for it, its
 * policy, its references); then the workflow, its steps and its first jobs are written in one
 * transaction, so nothing runs unless everything was accepted.
 */
export async function submitWorkflow(deps: JobDeps, principal: Principal, input: CreateWorkflowRequest): Promise<Workflow> {
  const tenantId = requireTenantMember(principal);
  requireTenantActive(principal);
  const prepared = await prepareSteps(deps, principal, input);
  const nowMs = deps.clock.nowMs();
  const workflowId = newId('workflow', nowMs);
  const spec: WorkflowSpec = { actor_id: actorIdOf(principal), actor_kind: principal.kind };
  const wakes = new WorkflowWakes();
  await deps.store.transaction(async (tx) => {
    // A full queue refuses workflows as it refuses jobs (429), so workflows are no way around the cap;
    // the steps a running workflow starts later are not refused (its submission was accepted).
    await lockTenantForSubmission(tx, tenantId);
    const cap = prepared[0]!.quota.concurrency.max_queued_jobs;
    if ((await countQueuedJobs(tx, tenantId, cap)) >= cap) throw queueFull(tenantId, cap);
    await tx.db
      .insertInto('workflows')
      .values({
        id: workflowId,
        tenant_id: tenantId,
        agent_id: principal.kind === 'agent' ? principal.agentId : null,
        status: workflowMachine.initial,
        created_at: toRfc3339(nowMs),
        started_at: null,
        completed_at: null,
        spec: JSON.stringify(spec),
        last_step_sequence: 0,
        name: input.name ?? null,
        reason: null,
      })
      .execute();
    for (const [index, step] of input.steps.entries()) {
      const stepSpec: StepSpec = {
        needs: resolvedNeeds(input.steps, index),
        inputs: step.inputs ?? [],
        continue_on_failure: step.continue_on_failure ?? false,
        job: prepared[index]!.newJob,
      };
      await appendWorkflowStep(tx, { workflowId, nowMs, name: step.name, agentId: prepared[index]!.newJob.agent_id, spec: stepSpec });
    }
    await auditSuccess(deps, tx, principal, {
      action: 'workflow.create',
      resource_type: 'workflow',
      resource_id: workflowId,
      details: { name: input.name ?? null, steps: input.steps.length },
    });
    await advanceWorkflow(deps, tx, workflowId, nowMs, wakes);
  });
  wakes.publish(deps);
  return getTenantWorkflow(deps, principal, workflowId);
}
