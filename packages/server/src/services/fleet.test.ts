import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getRunner } from '../store/fleet.js';
import { getJob } from '../store/jobs.js';
import { DB_KINDS } from '../store/testing.js';
import { drainRunner, getFleetRunner, listFleet, listFleetSandboxes, sweepFleet } from './fleet.js';
import { auditOf, expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, submitJob } from './jobs.js';
import { leaseWork, runnerHeartbeat } from './runner-protocol.js';

describe.each(DB_KINDS)('fleet liveness and recovery on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  const lease = (runnerId: string, freeSlots = 1) => leaseWork(bed.deps, { runner_id: runnerId, free_slots: freeSlots, wait_ms: 0 });
  const beat = (runnerId: string) => runnerHeartbeat(bed.deps, { runner_id: runnerId, leases: [], sandboxes: [] });
  const status = async (runnerId: string) => (await getRunner(bed.store, runnerId))!.status;
  const submit = () => submitJob(bed.deps, acme.admin, jobRequest());

  it('moves a runner healthy → degraded → offline by heartbeat age', async () => {
    const { degradedAfterMs, offlineAfterMs } = bed.deps.fleet;
    const r1 = await bed.runner('node-a');
    bed.clock.advance(degradedAfterMs);
    await sweepFleet(bed.deps);
    expect(await status(r1)).toBe('healthy');
    bed.clock.advance(1);
    await sweepFleet(bed.deps);
    expect(await status(r1)).toBe('degraded');
    bed.clock.advance(offlineAfterMs - degradedAfterMs - 1);
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 0, recovered: 0 });
    expect(await status(r1)).toBe('degraded');
    bed.clock.advance(1);
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 1, recovered: 0 });
    expect(await status(r1)).toBe('offline');
    expect(await auditOf(bed.store, 'runner.offline', r1)).toHaveLength(1);
    // Offline stays offline: a second sweep reports nothing new.
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 0, recovered: 0 });
  });

  it('brings a degraded or offline runner back to healthy with a heartbeat', async () => {
    const r1 = await bed.runner('node-a');
    bed.clock.advance(bed.deps.fleet.degradedAfterMs + 1);
    await sweepFleet(bed.deps);
    expect(await status(r1)).toBe('degraded');
    expect((await beat(r1)).status).toBe('healthy');
    expect(await status(r1)).toBe('healthy');
    bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
    await sweepFleet(bed.deps);
    expect(await status(r1)).toBe('offline');
    await beat(r1);
    expect(await status(r1)).toBe('healthy');
  });

  it("recovers an offline runner's work: jobs requeued with their attempt, sandboxes failed, leased again as the next attempt", async () => {
    const r1 = await bed.runner('node-a');
    const r2 = await bed.runner('node-b');
    const a = await submit();
    const b = await submit();
    const leases = (await lease(r1, 2)).leases;
    expect(leases).toHaveLength(2);
    bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
    await beat(r2);
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 1, recovered: 2 });
    for (const job of [a, b]) {
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'queued', attempt: 1, runner_id: null, error: 'runner went offline' });
      expect(await auditOf(bed.store, 'job.requeue', job.id)).toHaveLength(1);
    }
    const sandboxes = await listFleetSandboxes(bed.deps, { kind: 'operator' }, { limit: 10, runner_id: r1 });
    expect(sandboxes.items.map((s) => s.status)).toEqual(['failed', 'failed']);
    const again = (await lease(r2, 2)).leases;
    expect(again.map((l) => l.attempt)).toEqual([2, 2]);
    expect(new Set(again.map((l) => l.job_id))).toEqual(new Set([a.id, b.id]));
    // The offline runner gets nothing until it heartbeats again.
    const c = await submit();
    expect((await lease(r1)).leases).toEqual([]);
    await beat(r1);
    expect((await lease(r1)).leases.map((l) => l.job_id)).toEqual([c.id]);
  });

  it('settles a job canceled while it ran when its runner is lost before reporting', async () => {
    const r1 = await bed.runner('node-a');
    const job = await submit();
    await lease(r1);
    await cancelJob(bed.deps, acme.admin, job.id);
    expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'canceled', runner_id: r1, output_refs: null });
    bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
    await sweepFleet(bed.deps);
    // No report will come: the job no longer names a runner, and its sandbox failed with the node.
    expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'canceled', runner_id: null, output_refs: null });
    const sandboxes = await listFleetSandboxes(bed.deps, { kind: 'operator' }, { limit: 10, job_id: job.id });
    expect(sandboxes.items.map((s) => s.status)).toEqual(['failed']);
  });

  it('fails a job with system_error once its attempts are used up', async () => {
    const first = await bed.runner('node-1');
    const job = await submit();
    const { maxAttempts } = bed.deps.fleet;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const runner = attempt === 1 ? first : await bed.runner(`node-${attempt}`);
      expect((await lease(runner)).leases.map((l) => l.attempt)).toEqual([attempt]);
      bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
      expect(await sweepFleet(bed.deps)).toEqual({ offline: 1, recovered: 1 });
    }
    const row = (await getJob(bed.store, job.id))!;
    expect(row).toMatchObject({ status: 'failed', verdict: 'system_error', attempt: maxAttempts, lease_expires_at: null });
    expect(row.error).toContain(`no attempts left (${maxAttempts})`);
    expect(await auditOf(bed.store, 'job.requeue', job.id)).toHaveLength(maxAttempts - 1);
    expect(await auditOf(bed.store, 'job.fail', job.id)).toHaveLength(1);
    const fresh = await bed.runner('node-fresh');
    expect((await lease(fresh)).leases).toEqual([]);
  });

  it('recovers a lease that ran out on a live runner', async () => {
    const r1 = await bed.runner('node-a');
    const job = await submit();
    const [leased] = (await lease(r1)).leases;
    // The runner keeps beating but no longer names the job (it lost track of it).
    bed.clock.advance(bed.deps.fleet.leaseTtlMs);
    await beat(r1);
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 0, recovered: 0 });
    bed.clock.advance(1);
    await beat(r1);
    expect(await sweepFleet(bed.deps)).toEqual({ offline: 0, recovered: 1 });
    expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'queued', attempt: 1, error: 'lease expired' });
    const [audit] = await auditOf(bed.store, 'job.requeue', job.id);
    expect(JSON.parse(audit!.details)).toMatchObject({ reason: 'lease expired', attempt: 1 });
    const sandbox = await listFleetSandboxes(bed.deps, { kind: 'operator' }, { limit: 10, job_id: job.id });
    expect(sandbox.items.map((s) => [s.id, s.status])).toEqual([[leased!.sandbox_id, 'failed']]);
  });

  it('recovers each lost job once when two replicas sweep at the same time', async () => {
    const r1 = await bed.runner('node-a');
    const jobs = [await submit(), await submit(), await submit()];
    await lease(r1, 3);
    bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
    const [one, two] = await Promise.all([sweepFleet(bed.deps), sweepFleet(bed.deps)]);
    expect(one!.offline + two!.offline).toBe(1);
    expect(one!.recovered + two!.recovered).toBe(3);
    expect(await auditOf(bed.store, 'runner.offline', r1)).toHaveLength(1);
    for (const job of jobs) expect(await auditOf(bed.store, 'job.requeue', job.id)).toHaveLength(1);
  });

  it('lets only the operator see and drain the fleet', async () => {
    const r1 = await bed.runner('node-a', { zone: 'eu', languages: ['python', 'ruby'] });
    const operator = { kind: 'operator' } as const;
    expect(await getFleetRunner(bed.deps, operator, r1)).toMatchObject({ id: r1, zone: 'eu', status: 'healthy', draining: false });
    expect((await listFleet(bed.deps, operator, { limit: 10 })).items.map((r) => r.id)).toEqual([r1]);
    await expectKilnError(listFleet(bed.deps, acme.admin, { limit: 10 }), 'FORBIDDEN');
    await expectKilnError(drainRunner(bed.deps, acme.admin, r1), 'FORBIDDEN');
    await expectKilnError(drainRunner(bed.deps, operator, 'runner_missing'), 'NOT_FOUND');
    expect((await drainRunner(bed.deps, operator, r1)).draining).toBe(true);
    expect(await auditOf(bed.store, 'runner.drain', r1)).toHaveLength(1);
  });
});
