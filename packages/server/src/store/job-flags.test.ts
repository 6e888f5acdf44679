import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JobFlag } from '../domain/job-flags.js';
import { completeJob } from '../services/job-completion.js';
import { jobRequest, openJobBed, type JobBed, type TestTenant } from '../services/job-testing.js';
import { submitJob } from '../services/jobs.js';
import { leaseWork } from '../services/runner-protocol.js';
import { getTenantWorkflow } from '../services/workflows/queries.js';
import { submitWorkflow } from '../services/workflows/submission.js';
import { flagJobsFromTheirTables } from './migration-0022-job-flags.js';
import { DB_KINDS } from './testing.js';

// Job flags (issue 14): set when a job is made, they let the hot path skip lookups that find nothing.
// What must never happen: a flagged lookup skipped for a job that needs it.
describe.each(DB_KINDS)('job flags on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let runnerId: string;

  beforeAll(async () => {
    bed = await openJobBed(kind);
  });
  afterAll(() => bed.close());
  let n = 0;
  beforeEach(async () => {
    // A tenant and a runner of its own per test (the bed's reset does not know workflows).
    n += 1;
    acme = await bed.newTenant(`acme-${n}`);
    runnerId = await bed.runner(`node-${n}`);
  });

  const flagsOf = async (jobId: string) =>
    Number((await bed.store.db.selectFrom('jobs').select('flags').where('id', '=', jobId).executeTakeFirstOrThrow()).flags);
  const lease = async () => (await leaseWork(bed.deps, { runner_id: runnerId, free_slots: 4, wait_ms: 0 })).leases;

  it('marks a job with secret_env, and its lease still opens the secret; a plain job is marked nothing', async () => {
    const plain = await submitJob(bed.deps, acme.agent, jobRequest());
    const sealed = await submitJob(bed.deps, acme.agent, jobRequest({ secret_env: { TOKEN: 'hush' } }));
    expect(await flagsOf(plain.id)).toBe(0);
    expect(await flagsOf(sealed.id)).toBe(JobFlag.secretEnv);
    const leases = await lease();
    expect(leases.find((l) => l.job_id === sealed.id)!.spec.env).toMatchObject({ TOKEN: 'hush' });
    expect(leases.find((l) => l.job_id === plain.id)!.spec.env).not.toHaveProperty('TOKEN');
  });

  it("marks a workflow step's job, whose end still advances its workflow", async () => {
    const w = await submitWorkflow(bed.deps, acme.admin, {
      steps: [
        { name: 'a', language: 'python', code: 'print(1)' },
        { name: 'b', language: 'python', code: 'print(2)', needs: ['a'] },
      ],
    });
    const [first] = await lease();
    expect(await flagsOf(first!.job_id)).toBe(JobFlag.workflowStep);
    await completeJob(bed.deps, runnerId, first!.job_id, await bed.report(first!.job_id, first!.attempt));
    const [second] = await lease();
    expect(await flagsOf(second!.job_id)).toBe(JobFlag.workflowStep);
    await completeJob(bed.deps, runnerId, second!.job_id, await bed.report(second!.job_id, second!.attempt));
    expect((await getTenantWorkflow(bed.deps, acme.admin, w.id)).status).toBe('succeeded');
  });

  it('flags the jobs from before the column by what the workflow and secrets tables say of them (the upgrade)', async () => {
    await submitWorkflow(bed.deps, acme.admin, { steps: [{ name: 'a', language: 'python', code: 'print(1)' }] });
    const sealed = await submitJob(bed.deps, acme.agent, jobRequest({ secret_env: { TOKEN: 'hush' } }));
    const plain = await submitJob(bed.deps, acme.agent, jobRequest());
    const step = await bed.store.db
      .selectFrom('workflow_steps')
      .innerJoin('workflows', 'workflows.id', 'workflow_steps.workflow_id')
      .select('workflow_steps.job_id')
      .where('workflows.tenant_id', '=', acme.tenantId)
      .executeTakeFirstOrThrow();
    // As an older control plane left them: every job unflagged, and a job in flight across the upgrade.
    await bed.store.db.updateTable('jobs').set({ flags: 0 }).where('tenant_id', '=', acme.tenantId).execute();
    await flagJobsFromTheirTables(bed.store.db);
    expect(await flagsOf(step.job_id!)).toBe(JobFlag.workflowStep);
    expect(await flagsOf(sealed.id)).toBe(JobFlag.secretEnv);
    expect(await flagsOf(plain.id)).toBe(0);
    const leases = await lease();
    expect(leases.find((l) => l.job_id === sealed.id)!.spec.env).toMatchObject({ TOKEN: 'hush' });
  });
});
