import { createJobSchema, parseOrThrow } from '@kiln/core';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openSecretEnv, sealSecretEnv } from '../domain/secret-box.js';
import { DB_KINDS } from '../store/testing.js';
import { completeJob } from './job-completion.js';
import { expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { sweepFleet } from './fleet.js';
import { cancelJob, getTenantJob, listTenantJobs, submitJob } from './jobs.js';
import { leaseWork, runnerHeartbeat } from './runner-protocol.js';

/** Issue 7, point 7: `secret_env` values reach the lease holder and nothing else; never stored in plaintext. */
describe.each(DB_KINDS)('secret_env on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  const lease = (runnerId: string) => leaseWork(bed.deps, { runner_id: runnerId, free_slots: 4, wait_ms: 0 });
  /** Every text column of every table that might carry a request, an answer or an audit record. */
  const everythingStored = async () =>
    JSON.stringify([
      await bed.store.db.selectFrom('jobs').selectAll().execute(),
      await bed.store.db.selectFrom('job_secrets').selectAll().execute(),
      await bed.store.db.selectFrom('audit_events').selectAll().execute(),
      await bed.store.db.selectFrom('artifacts').selectAll().execute(),
    ]);
  const submitWithSecret = () => submitJob(bed.deps, acme.agent, jobRequest({ env: { PLAIN: 'visible' }, secret_env: { API_TOKEN: SECRET } }));

  it('stores the value sealed, answers without it, and hands it only to the runner that leases the job', async () => {
    const r1 = await bed.runner('node-a');
    const job = await submitWithSecret();
    expect(JSON.stringify(job)).not.toContain(SECRET);
    expect(JSON.stringify(await getTenantJob(bed.deps, acme.agent, job.id))).not.toContain(SECRET);
    expect(JSON.stringify(await listTenantJobs(bed.deps, acme.admin, { limit: 50 }))).not.toContain(SECRET);
    const stored = await everythingStored();
    expect(stored).not.toContain(SECRET);
    expect(stored).not.toContain(Buffer.from(SECRET).toString('base64'));
    const [sealed] = await bed.store.db.selectFrom('job_secrets').selectAll().execute();
    expect(sealed!.sealed).toMatch(/^v1\./);
    const [leased] = (await lease(r1)).leases;
    expect(leased!.spec.env).toEqual({ PLAIN: 'visible', API_TOKEN: SECRET });
    expect(await everythingStored()).not.toContain(SECRET);
    // Done: the sealed value goes with the reaper's next pass.
    await completeJob(bed.deps, r1, job.id, await bed.report(job.id, 1));
    await sweepFleet(bed.deps);
    expect(await bed.store.db.selectFrom('job_secrets').selectAll().execute()).toEqual([]);
  });

  it('keeps the value for a requeued attempt, and drops it when a queued job is canceled', async () => {
    const r1 = await bed.runner('node-a');
    const job = await submitWithSecret();
    await lease(r1);
    const r2 = await bed.runner('node-b');
    bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
    await runnerHeartbeat(bed.deps, { runner_id: r2, leases: [], sandboxes: [] });
    expect(await sweepFleet(bed.deps)).toMatchObject({ recovered: 1 });
    const [again] = (await lease(r2)).leases;
    expect(again).toMatchObject({ job_id: job.id, attempt: 2 });
    expect(again!.spec.env.API_TOKEN).toBe(SECRET);

    const queued = await submitWithSecret();
    await cancelJob(bed.deps, acme.agent, queued.id);
    await sweepFleet(bed.deps);
    const left = await bed.store.db.selectFrom('job_secrets').select('job_id').execute();
    expect(left.map((r) => r.job_id)).toEqual([job.id]);
  });

  it('refuses a name given in env and secret_env both, and secret_env on a control plane without a key', async () => {
    const overlap = (() => {
      try {
        parseOrThrow(createJobSchema, { language: 'python', code: '1', env: { A: '1' }, secret_env: { A: SECRET } }, 'body');
      } catch (err) {
        return err as { code: string; message: string; fields?: { field: string }[] };
      }
    })();
    expect(overlap?.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(overlap)).toContain('body.secret_env.A');
    expect(JSON.stringify(overlap)).not.toContain(SECRET);
    await bed.runner('node-a');
    const key = bed.deps.secretsKey;
    bed.deps.secretsKey = undefined;
    try {
      await expectKilnError(submitWithSecret(), 'VALIDATION_FAILED');
      expect(await bed.store.db.selectFrom('jobs').selectAll().execute()).toEqual([]);
    } finally {
      bed.deps.secretsKey = key;
    }
  });
});

describe('the secret box', () => {
  it('opens only with the key and for the job it was sealed for', () => {
    const key = randomBytes(32);
    const sealed = sealSecretEnv(key, 'job_a', { X: 'value' });
    expect(openSecretEnv(key, 'job_a', sealed)).toEqual({ X: 'value' });
    expect(() => openSecretEnv(key, 'job_b', sealed)).toThrow();
    expect(() => openSecretEnv(randomBytes(32), 'job_a', sealed)).toThrow();
    const [v, iv, tag, data] = sealed.split('.');
    const flipped = Buffer.from(data!, 'base64url');
    flipped[0]! ^= 1;
    expect(() => openSecretEnv(key, 'job_a', [v, iv, tag, flipped.toString('base64url')].join('.'))).toThrow();
  });
});
