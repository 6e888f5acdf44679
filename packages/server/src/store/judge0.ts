import { assertCallbackTransition, type Judge0CallbackState } from '../domain/compat/judge0-callback.js';
import type { Judge0SubmissionsTable } from './schema.js';
import { precompiled } from './precompiled.js';
import type { DbHandle } from './store.js';

export type Judge0SubmissionRow = Judge0SubmissionsTable;

export async function insertJudge0Submission(h: DbHandle, row: Judge0SubmissionRow): Promise<void> {
  await h.db.insertInto('judge0_submissions').values(row).execute();
  const jobIds = JSON.parse(row.job_ids) as string[];
  await h.db.insertInto('judge0_runs').values(jobIds.map((job_id) => ({ job_id, token: row.token }))).execute();
}

/** A tenant's submission by token; another tenant's answers undefined, as a missing one. */
export async function findJudge0Submission(h: DbHandle, tenantId: string, token: string): Promise<Judge0SubmissionRow | undefined> {
  return h.db.selectFrom('judge0_submissions').selectAll().where('token', '=', token).where('tenant_id', '=', tenantId).executeTakeFirst();
}

const submissionOfJob = precompiled<[jobId: string], Judge0SubmissionRow>(
  (db, jobId) =>
    db
      .selectFrom('judge0_runs')
      .innerJoin('judge0_submissions', 'judge0_submissions.token', 'judge0_runs.token')
      .selectAll('judge0_submissions')
      .where('judge0_runs.job_id', '=', jobId),
  1,
);

/** The submission a job runs for, if it is a Judge0 run (one indexed lookup per job end). */
export async function findJudge0SubmissionOfJob(h: DbHandle, jobId: string): Promise<Judge0SubmissionRow | undefined> {
  return (await submissionOfJob(h, jobId)).rows[0];
}

/** Moves the callback from one state to the next; false when another replica moved it first. */
export async function moveJudge0Callback(h: DbHandle, token: string, from: Judge0CallbackState, to: Judge0CallbackState): Promise<boolean> {
  assertCallbackTransition(from, to);
  const result = await h.db
    .updateTable('judge0_submissions')
    .set({ callback_state: to })
    .where('token', '=', token)
    .where('callback_state', '=', from)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteJudge0Submission(h: DbHandle, token: string): Promise<void> {
  await h.db.deleteFrom('judge0_runs').where('token', '=', token).execute();
  await h.db.deleteFrom('judge0_submissions').where('token', '=', token).execute();
}

/**
 * Retention deleting jobs takes their Judge0 runs with them, and a submission whose every run is gone:
 * its source and expected output must not outlive the jobs that ran them.
 */
export async function deleteJudge0RunsOfJobs(h: DbHandle, jobIds: readonly string[]): Promise<void> {
  if (jobIds.length === 0) return;
  const runs = await h.db.deleteFrom('judge0_runs').where('job_id', 'in', [...jobIds]).returning('token').execute();
  const tokens = [...new Set(runs.map((r) => r.token))];
  if (tokens.length === 0) return;
  await h.db
    .deleteFrom('judge0_submissions')
    .where('token', 'in', tokens)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('judge0_runs').select('judge0_runs.job_id').whereRef('judge0_runs.token', '=', 'judge0_submissions.token'))),
    )
    .execute();
}
