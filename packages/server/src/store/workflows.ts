import { toRfc3339 } from '@kiln/core';
import type { Selectable } from 'kysely';
import { workflowMachine, workflowStepMachine, type WorkflowState, type WorkflowStepState } from '../domain/machines.js';
import { assertTransition } from '../domain/state-machine.js';
import type { JobRow } from './jobs.js';
import type { WorkflowsTable } from './schema.js';
import type { WorkflowStepRow } from './steps.js';
import type { DbHandle, TxHandle } from './store.js';
import { precompiled } from './precompiled.js';

export type WorkflowRow = Selectable<WorkflowsTable>;
export type { WorkflowStepRow };

export async function getWorkflow(h: DbHandle, id: string): Promise<WorkflowRow | undefined> {
  return h.db.selectFrom('workflows').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The workflow, locked for this transaction: two steps ending at once advance one after the other, so
 * each sees what the other did (PostgreSQL row lock; SQLite has one writer anyway).
 */
export async function lockWorkflow(tx: TxHandle, id: string): Promise<WorkflowRow | undefined> {
  if (tx.dialect === 'postgres') {
    return tx.db.selectFrom('workflows').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
  }
  return getWorkflow(tx, id);
}

export async function stepsOf(h: DbHandle, workflowId: string): Promise<WorkflowStepRow[]> {
  return h.db.selectFrom('workflow_steps').selectAll().where('workflow_id', '=', workflowId).orderBy('sequence').execute();
}

const stepOfJob = precompiled<[jobId: string], { workflow_id: string }>(
  (db, jobId) => db.selectFrom('workflow_steps').select('workflow_id').where('job_id', '=', jobId),
  1,
);

/** The workflow a job belongs to as a step, if any (one indexed lookup per job end). */
export async function workflowOfJob(h: DbHandle, jobId: string): Promise<string | undefined> {
  return (await stepOfJob(h, jobId)).rows[0]?.workflow_id;
}

/** The jobs of these steps, by id. */
export async function jobsOfSteps(h: DbHandle, steps: WorkflowStepRow[]): Promise<Map<string, JobRow>> {
  const ids = steps.map((s) => s.job_id).filter((id): id is string => id !== null);
  if (ids.length === 0) return new Map();
  const rows = await h.db.selectFrom('jobs').selectAll().where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [r.id, r]));
}

/**
 * Moves a step, through the transition table, only if it is still in the state this transaction read:
 * a concurrent advance that got there first makes this one a no-op (false), never a second job.
 */
export async function moveStep(
  tx: TxHandle,
  step: WorkflowStepRow,
  to: WorkflowStepState,
  values: Partial<WorkflowStepRow>,
): Promise<boolean> {
  assertTransition(workflowStepMachine, step.status as WorkflowStepState, to, step.id);
  const result = await tx.db
    .updateTable('workflow_steps')
    .set({ ...values, status: to })
    .where('id', '=', step.id)
    .where('status', '=', step.status)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function moveWorkflow(
  tx: TxHandle,
  workflow: WorkflowRow,
  to: WorkflowState,
  values: Partial<WorkflowRow>,
  nowMs: number,
): Promise<boolean> {
  assertTransition(workflowMachine, workflow.status as WorkflowState, to, workflow.id);
  const ended = to === 'succeeded' || to === 'failed' || to === 'canceled';
  const result = await tx.db
    .updateTable('workflows')
    .set({ ...values, status: to, ...(ended ? { completed_at: toRfc3339(nowMs) } : {}) })
    .where('id', '=', workflow.id)
    .where('status', '=', workflow.status)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Workflows whose advance is due, after `afterId`: a step still open whose job has ended (a job end no
 * hook saw, or a crash), or an unfinished workflow with no step open at all (nothing running will ever
 * wake it). Both are indexed lookups, so a sweep costs what the stragglers cost, not every open workflow.
 */
export async function workflowsDueForAdvance(h: DbHandle, afterId: string, limit: number): Promise<string[]> {
  const stale = await h.db
    .selectFrom('workflow_steps as s')
    .innerJoin('jobs as j', 'j.id', 's.job_id')
    .select('s.workflow_id')
    .distinct()
    .where('s.status', 'in', ['queued', 'running'])
    .where('j.status', 'in', ['succeeded', 'failed', 'canceled'])
    .where('s.workflow_id', '>', afterId)
    .orderBy('s.workflow_id')
    .limit(limit)
    .execute();
  const idle = await h.db
    .selectFrom('workflows as w')
    .select('w.id')
    .where('w.status', 'in', ['queued', 'running'])
    .where('w.id', '>', afterId)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb.selectFrom('workflow_steps as s').select('s.id').whereRef('s.workflow_id', '=', 'w.id').where('s.status', 'in', ['queued', 'running']),
        ),
      ),
    )
    .orderBy('w.id')
    .limit(limit)
    .execute();
  return [...new Set([...stale.map((r) => r.workflow_id), ...idle.map((r) => r.id)])].sort().slice(0, limit);
}
