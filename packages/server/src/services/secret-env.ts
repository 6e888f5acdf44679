import { KilnError, toRfc3339, type JobSpec } from '@kiln/core';
import { sql } from 'kysely';
import { JobFlag, mayBe } from '../domain/job-flags.js';
import { openSecretEnv, sealSecretEnv } from '../domain/secret-box.js';
import type { DbHandle, TxHandle } from '../store/store.js';
import type { JobDeps } from './job-deps.js';

/**
 * A job's `secret_env` (issue 7, point 7): sealed with the control plane's secrets key in the submitting
 * transaction, so nothing a user gave is lost across a restart; opened only into the lease answer of the
 * runner that claimed the job (bound by its credential); deleted once the job has ended. Plaintext is
 * never in the database, a log, an answer to a user or the audit.
 */

/** Stores a job's secret values sealed, in the caller's transaction. */
export async function storeSecretEnv(deps: JobDeps, tx: TxHandle, jobId: string, values: Record<string, string> | undefined): Promise<void> {
  if (!values || Object.keys(values).length === 0) return;
  if (!deps.secretsKey) {
    throw new KilnError('VALIDATION_FAILED', 'this control plane has no secrets key, so it cannot take secret_env; use env', {
      field: 'body.secret_env',
    });
  }
  await tx.db
    .insertInto('job_secrets')
    .values({ job_id: jobId, sealed: sealSecretEnv(deps.secretsKey, jobId, values), created_at: toRfc3339(deps.clock.nowMs()) })
    .execute();
}

/** The specs of freshly claimed jobs with their secret values merged into `env`, for the claiming runner only. */
export async function withSecretEnv<T extends { job: { id: string; flags?: number }; spec: JobSpec }>(
  deps: JobDeps,
  h: DbHandle,
  claimed: T[],
): Promise<T[]> {
  // Only jobs submitted with secret_env have any (jobs.flags): most leases read nothing here.
  const sealedOnes = claimed.filter((c) => mayBe(c.job.flags, JobFlag.secretEnv));
  if (sealedOnes.length === 0) return claimed;
  const rows = await h.db
    .selectFrom('job_secrets')
    .select(['job_id', 'sealed'])
    .where('job_id', 'in', sealedOnes.map((c) => c.job.id))
    .execute();
  if (rows.length === 0) return claimed;
  if (!deps.secretsKey) throw new Error('jobs hold secret_env but this control plane has no secrets key (KILN_SECRETS_KEY)');
  const sealed = new Map(rows.map((r) => [r.job_id, r.sealed]));
  return claimed.map((c) => {
    const text = sealed.get(c.job.id);
    if (text === undefined) return c;
    return { ...c, spec: { ...c.spec, env: { ...c.spec.env, ...openSecretEnv(deps.secretsKey!, c.job.id, text) } } };
  });
}

/** Deletes the sealed values of jobs that have ended, however they ended (one pass of the fleet reaper). */
export async function dropEndedSecretEnv(tx: TxHandle): Promise<number> {
  // One primary-key probe of jobs per sealed row: the cost follows the live secrets, not the job history.
  const result = await tx.db
    .deleteFrom('job_secrets')
    .where(({ exists, selectFrom }) =>
      exists(
        selectFrom('jobs')
          .select(sql<number>`1`.as('one'))
          .whereRef('jobs.id', '=', 'job_secrets.job_id')
          .where('jobs.status', 'in', ['succeeded', 'failed', 'canceled']),
      ),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
