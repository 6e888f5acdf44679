import { toRfc3339 } from '@kiln/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../../store/testing.js';
import { sweepFleet } from '../fleet.js';
import { completeJob } from '../job-completion.js';
import { openJobBed, type JobBed, type TestTenant } from '../job-testing.js';
import { leaseWork } from '../runner-protocol.js';
import { sweepWorkflows } from './sweeper.js';
import { submitWorkflow } from './submission.js';
import { getTenantWorkflow } from './queries.js';

// The engine against a real store of each kind and the real runner protocol: the advance a job end
// causes, the sweeper finishing one a crash (or an unhooked path) left undone, and what it refuses.

describe.each(DB_KINDS)('workflow engine on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let runnerId: string;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
    runnerId = await bed.runner('node-a', { languages: ['python'], capacity: 8 });
  });
  afterAll(() => bed.close());

  const lease = async () => (await leaseWork(bed.deps, { runner_id: runnerId, free_slots: 8, wait_ms: 0 })).leases;
  const jobsOf = async () => bed.store.db.selectFrom('jobs').select('id').where('tenant_id', '=', acme.tenantId).execute();
  const twoSteps = () =>
    submitWorkflow(bed.deps, acme.admin, {
      steps: [
        { name: 'make', language: 'python', code: 'print(1)' },
        { name: 'use', language: 'python', code: 'print(2)', inputs: [{ step: 'make', artifact: 'out/data.csv', path: 'data.csv' }] },
      ],
    });

  it("creates the next step's job in the completion's transaction, with the input in its spec, checksum checked", async () => {
    const w = await twoSteps();
    const [first] = await lease();
    const blob = await bed.upload(first!.job_id, first!.attempt, 'a,b\n1,2\n');
    await completeJob(bed.deps, runnerId, first!.job_id, await bed.report(first!.job_id, first!.attempt, { artifacts: [{ name: 'out/data.csv', ...blob }] }));
    const after = await getTenantWorkflow(bed.deps, acme.admin, w.id);
    expect(after.steps!.map((s) => s.status)).toEqual(['succeeded', 'queued']);
    const [second] = await lease();
    expect(second!.job_id).toBe(after.steps![1]!.job_id);
    const input = second!.spec.files.find((f) => f.path === 'data.csv')!;
    expect(Buffer.from(input.content, 'base64').toString()).toBe('a,b\n1,2\n');
    await completeJob(bed.deps, runnerId, second!.job_id, await bed.report(second!.job_id, second!.attempt));
    expect((await getTenantWorkflow(bed.deps, acme.admin, w.id)).status).toBe('succeeded');
  });

  it('lets the sweeper finish an advance a job end left undone, once however often it runs', async () => {
    const w = await submitWorkflow(bed.deps, acme.admin, {
      steps: [{ name: 'a', language: 'python', code: 'print(1)' }, { name: 'b', language: 'python', code: 'print(2)' }],
    });
    const jobA = (await getTenantWorkflow(bed.deps, acme.admin, w.id)).steps![0]!.job_id!;
    // The job ends without its hook (as a path that does not advance workflows, or a crash before it).
    await bed.store.db.updateTable('jobs').set({ status: 'succeeded', verdict: 'ok' }).where('id', '=', jobA).execute();
    const before = (await jobsOf()).length;
    await Promise.all([sweepWorkflows(bed.deps), sweepWorkflows(bed.deps)]);
    await sweepWorkflows(bed.deps);
    const swept = await getTenantWorkflow(bed.deps, acme.admin, w.id);
    expect(swept.steps!.map((s) => s.status)).toEqual(['succeeded', 'queued']);
    expect((await jobsOf()).length).toBe(before + 1);
    await bed.store.db.updateTable('jobs').set({ status: 'succeeded', verdict: 'ok' }).where('id', '=', swept.steps![1]!.job_id!).execute();
    await sweepWorkflows(bed.deps);
    expect((await getTenantWorkflow(bed.deps, acme.admin, w.id)).status).toBe('succeeded');
    expect(await sweepWorkflows(bed.deps)).toBe(0);
  });

  it('fails a step whose input no longer matches its checksum, naming it, with no job made', async () => {
    const w = await submitWorkflow(bed.deps, acme.admin, {
      steps: [
        { name: 'make', language: 'python', code: 'print(1)' },
        { name: 'wait', language: 'python', code: 'print(2)' },
        { name: 'use', language: 'python', code: 'print(3)', inputs: [{ step: 'make', artifact: 'out/data.csv', path: 'data.csv' }] },
      ],
    });
    const finish = async (jobId: string, file?: string) => {
      const mine = (await lease()).find((l) => l.job_id === jobId)!;
      const artifacts = file === undefined ? [] : [{ name: 'out/data.csv', ...(await bed.upload(jobId, mine.attempt, file)) }];
      await completeJob(bed.deps, runnerId, jobId, await bed.report(jobId, mine.attempt, { artifacts }));
    };
    const makeJob = w.steps![0]!.job_id!;
    await finish(makeJob, 'x,y\n');
    // The recorded checksum no longer matches the stored bytes (a tampered row, a corrupted store).
    await bed.store.db.updateTable('artifacts').set({ checksum: `sha256:${'0'.repeat(64)}` }).where('owner_id', '=', makeJob).where('name', '=', 'out/data.csv').execute();
    await finish((await getTenantWorkflow(bed.deps, acme.admin, w.id)).steps![1]!.job_id!);
    const done = await getTenantWorkflow(bed.deps, acme.admin, w.id);
    expect(done.status).toBe('failed');
    expect(done.steps![2]).toMatchObject({ status: 'failed', job_id: null });
    expect(done.steps![2]!.reason).toMatch(/out\/data\.csv.*checksum/);
  });

  it('answers another tenant 404 and refuses a reference to a later step before writing anything', async () => {
    const globex = await bed.newTenant('globex');
    const w = await twoSteps();
    await expect(getTenantWorkflow(bed.deps, globex.admin, w.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const before = (await jobsOf()).length;
    await expect(
      submitWorkflow(bed.deps, acme.admin, { steps: [{ name: 'a', language: 'python', code: '1', needs: ['a'] }] }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.steps.0.needs.0' });
    expect((await jobsOf()).length).toBe(before);
  });

  // Last: it takes the file's runner offline.
  it("advances in the fleet reaper's transaction when a lost runner's step job has no attempts left", async () => {
    const w = await submitWorkflow(bed.deps, acme.admin, {
      steps: [{ name: 'lost', language: 'python', code: 'print(1)' }, { name: 'after', language: 'python', code: 'print(2)' }],
    });
    const jobId = w.steps![0]!.job_id!;
    await lease();
    await bed.store.db.updateTable('jobs').set((eb) => ({ max_attempts: eb.ref('attempt') })).where('id', '=', jobId).execute();
    await bed.store.db.updateTable('runner_nodes').set({ last_heartbeat_at: toRfc3339(bed.clock.nowMs() - 3_600_000) }).where('id', '=', runnerId).execute();
    await sweepFleet(bed.deps);
    const done = await getTenantWorkflow(bed.deps, acme.admin, w.id);
    expect(done.status).toBe('failed');
    expect(done.steps!.map((s) => s.status)).toEqual(['failed', 'canceled']);
    expect(done.steps![0]!.reason).toContain('no attempts left');
  });
});
