import { newId, toRfc3339, KilnError } from '@kiln/core';
import type { Selectable } from 'kysely';
import { sessionStepMachine, workflowStepMachine } from '../domain/machines.js';
import type { SessionStepsTable, WorkflowStepsTable } from './schema.js';
import type { TxHandle } from './store.js';

export type SessionStepRow = Selectable<SessionStepsTable>;
export type WorkflowStepRow = Selectable<WorkflowStepsTable>;

/**
 * Appends a step to a session with the next sequence number. The number comes from the session's own
 * counter, bumped with UPDATE … RETURNING inside the caller's transaction: the row lock (PostgreSQL) or
 * the single writer (SQLite) makes concurrent appends take 1, 2, 3… with no gap and no repeat, and
 * UNIQUE(session_id, sequence) refuses a repeat should anything else slip.
 */
export async function appendSessionStep(
  tx: TxHandle,
  args: { sessionId: string; command: string; nowMs: number; spec?: unknown },
): Promise<SessionStepRow> {
  const bumped = await tx.db
    .updateTable('sessions')
    .set((eb) => ({ last_step_sequence: eb('last_step_sequence', '+', 1) }))
    .where('id', '=', args.sessionId)
    .returning('last_step_sequence')
    .executeTakeFirst();
  if (!bumped) throw new KilnError('NOT_FOUND', `session ${args.sessionId} does not exist`);
  const row: SessionStepRow = {
    id: newId('session_step', args.nowMs),
    session_id: args.sessionId,
    sequence: bumped.last_step_sequence,
    command: args.command,
    status: sessionStepMachine.initial,
    started_at: null,
    completed_at: null,
    exit_status: null,
    resource_usage: null,
    output_refs: null,
    created_at: toRfc3339(args.nowMs),
    spec: args.spec === undefined ? null : JSON.stringify(args.spec),
    verdict: null,
    stdout_inline: null,
    stderr_inline: null,
    error: null,
  };
  await tx.db.insertInto('session_steps').values(row).execute();
  return row;
}

/** Appends a step to a workflow with the next sequence number (same scheme as session steps). */
export async function appendWorkflowStep(
  tx: TxHandle,
  args: { workflowId: string; nowMs: number; name?: string | null; agentId?: string | null; spec?: unknown },
): Promise<WorkflowStepRow> {
  const bumped = await tx.db
    .updateTable('workflows')
    .set((eb) => ({ last_step_sequence: eb('last_step_sequence', '+', 1) }))
    .where('id', '=', args.workflowId)
    .returning('last_step_sequence')
    .executeTakeFirst();
  if (!bumped) throw new KilnError('NOT_FOUND', `workflow ${args.workflowId} does not exist`);
  const row: WorkflowStepRow = {
    id: newId('workflow_step', args.nowMs),
    workflow_id: args.workflowId,
    sequence: bumped.last_step_sequence,
    name: args.name ?? null,
    agent_id: args.agentId ?? null,
    job_id: null,
    status: workflowStepMachine.initial,
    started_at: null,
    completed_at: null,
    spec: args.spec === undefined ? null : JSON.stringify(args.spec),
    reason: null,
  };
  await tx.db.insertInto('workflow_steps').values(row).execute();
  return row;
}
