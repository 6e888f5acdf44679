import { toRfc3339 } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectKilnError, insertQueuedJob, openJobBed, type JobBed, type TestTenant } from '../services/job-testing.js';
import { claimJobs, expiredLeases, extendLeases, getJob, getLeasedJob, leasesToStop, requeueOrFail, type ClaimRequest } from './jobs.js';
import { DB_KINDS } from './testing.js';

const LEASE_TTL_MS = 15_000;

describe.each(DB_KINDS)('job store on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let globex: TestTenant;
  let t0: number;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
    globex = await bed.newTenant('globex');
  });
  afterAll(() => bed.close());
  beforeEach(async () => {
    await bed.reset();
    t0 = bed.clock.nowMs();
  });

  /** Claims in one transaction for a registered runner. */
  async function claim(runnerId: string, overrides: Partial<ClaimRequest> = {}) {
    return bed.store.transaction((tx) =>
      claimJobs(tx, { runnerId, zone: 'default', languages: ['python'], freeSlots: 10, nowMs: t0, leaseTtlMs: LEASE_TTL_MS, ...overrides }),
    );
  }

  it('claims the oldest jobs first, no more than the free slots', async () => {
    const runner = await bed.runner('r1');
    const newest = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2 });
    const oldest = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    const middle = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1 });
    const first = await claim(runner, { freeSlots: 2 });
    expect(first.map((c) => c.job.id)).toEqual([oldest.id, middle.id]);
    const second = await claim(runner, { freeSlots: 2 });
    expect(second.map((c) => c.job.id)).toEqual([newest.id]);
    expect(await claim(runner)).toEqual([]);
  });

  it('claims nothing with no free slots or no languages', async () => {
    const runner = await bed.runner('r1');
    await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    expect(await claim(runner, { freeSlots: 0 })).toEqual([]);
    expect(await claim(runner, { languages: [] })).toEqual([]);
    expect((await bed.store.db.selectFrom('jobs').select('status').execute()).map((r) => r.status)).toEqual(['queued']);
  });

  it('claims only languages the runner offers', async () => {
    const runner = await bed.runner('r1', { languages: ['ruby', 'lua'] });
    await insertQueuedJob(bed.store, acme, { requestedAtMs: t0, language: 'python' });
    const ruby = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1, language: 'ruby' });
    const lua = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2, language: 'lua' });
    const claimed = await claim(runner, { languages: ['ruby', 'lua'] });
    expect(claimed.map((c) => c.job.id)).toEqual([ruby.id, lua.id]);
    expect(claimed.map((c) => c.spec.language)).toEqual(['ruby', 'lua']);
  });

  it('places a job that resolved to a version only on a runner that offers that version', async () => {
    const gcc12 = await bed.runner('gcc-12', { languages: ['c'] });
    const gcc11 = await bed.runner('gcc-11', { languages: ['c'] });
    const any = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0, language: 'c' });
    const old = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1, language: 'c', version: '11.3.0' });
    const current = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2, language: 'c', version: '12.2.0' });
    // A runner that names no versions takes only the jobs that asked for none.
    expect((await claim(gcc12, { languages: ['c'] })).map((c) => c.job.id)).toEqual([any.id]);
    expect((await claim(gcc12, { languages: ['c'], versions: { c: ['12.2.0'], python: ['11.3.0'] } })).map((c) => c.job.id)).toEqual([current.id]);
    const claimed = await claim(gcc11, { languages: ['c'], versions: { c: ['11.3.0'] } });
    expect(claimed.map((c) => c.job.id)).toEqual([old.id]);
    expect(claimed[0]?.job.language_version).toBe('11.3.0');
  });

  it('places a zoned job only in its zone; an unzoned job anywhere', async () => {
    const eu = await bed.runner('eu-1', { zone: 'eu' });
    const us = await bed.runner('us-1', { zone: 'us' });
    const anywhere = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0, zone: null });
    const inUs = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1, zone: 'us' });
    const inEu = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2, zone: 'eu' });
    const euClaims = await claim(eu, { zone: 'eu' });
    expect(euClaims.map((c) => c.job.id)).toEqual([anywhere.id, inEu.id]);
    // A claim that names no zone takes unzoned work only.
    expect(await claim(us, { zone: null })).toEqual([]);
    const usClaims = await claim(us, { zone: 'us' });
    expect(usClaims.map((c) => c.job.id)).toEqual([inUs.id]);
  });

  it("keeps each tenant under its running-job cap, counting what already runs, without blocking other tenants", async () => {
    const runner = await bed.runner('r1');
    const capped = [];
    for (let i = 0; i < 4; i++) capped.push(await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + i, maxRunningJobs: 2 }));
    const other = await insertQueuedJob(bed.store, globex, { requestedAtMs: t0 + 10, maxRunningJobs: 2 });
    const first = await claim(runner);
    expect(first.map((c) => c.job.id)).toEqual([capped[0]!.id, capped[1]!.id, other.id]);
    // Two of acme's jobs run: its cap is reached across claims, not only within one.
    expect(await claim(runner)).toEqual([]);
    // One finishes: one more may run.
    await bed.store.db.updateTable('jobs').set({ status: 'succeeded' }).where('id', '=', capped[0]!.id).execute();
    expect((await claim(runner)).map((c) => c.job.id)).toEqual([capped[2]!.id]);
    expect(await claim(runner)).toEqual([]);
  });

  it('makes a claimed job running with attempt+1, a lease expiry and a provisioning sandbox', async () => {
    const runner = await bed.runner('r1');
    const queued = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    const [claimed] = await claim(runner);
    expect(claimed!.job.attempt).toBe(1);
    const row = (await getJob(bed.store, queued.id))!;
    expect(row).toMatchObject({
      status: 'running',
      attempt: 1,
      runner_id: runner,
      sandbox_id: claimed!.sandboxId,
      lease_expires_at: toRfc3339(t0 + LEASE_TTL_MS),
      started_at: toRfc3339(t0),
    });
    const sandbox = await bed.store.db.selectFrom('sandbox_instances').selectAll().where('id', '=', claimed!.sandboxId).executeTakeFirstOrThrow();
    expect(sandbox).toMatchObject({ kind: 'job', job_id: queued.id, runner_id: runner, status: 'provisioning', terminated_at: null });
  });

  it(
    'never hands the same job out twice when claims run concurrently, and claims them all',
    async () => {
      const runners: string[] = [];
      for (let i = 0; i < 8; i++) runners.push(await bed.runner(`r${i}`));
      const jobs = [];
      for (let i = 0; i < 40; i++) jobs.push(await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + i, maxRunningJobs: 1000 }));
      const handedOut: string[] = [];
      // On PostgreSQL these are 8 transactions on 8 connections at once (SKIP LOCKED); on SQLite they
      // queue for the single writer. A round may claim fewer than 40 when candidates are locked by another.
      for (let round = 0; round < 20 && handedOut.length < jobs.length; round++) {
        const results = await Promise.all(runners.map((r) => claim(r, { freeSlots: 5 })));
        for (const claimed of results) handedOut.push(...claimed.map((c) => c.job.id));
      }
      expect(new Set(handedOut).size).toBe(handedOut.length);
      expect(handedOut.sort()).toEqual(jobs.map((j) => j.id).sort());
      const rows = await bed.store.db.selectFrom('jobs').select(['status', 'attempt']).execute();
      expect(rows.every((r) => r.status === 'running' && r.attempt === 1)).toBe(true);
      const sandboxes = await bed.store.db.selectFrom('sandbox_instances').select('job_id').execute();
      expect(sandboxes).toHaveLength(40);
    },
    20_000,
  );

  it('fences on the attempt: only the current attempt of a held job passes getLeasedJob', async () => {
    const runner = await bed.runner('r1');
    const queued = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    await claim(runner);
    const held = await bed.store.transaction((tx) => getLeasedJob(tx, { jobId: queued.id, attempt: 1 }));
    expect(held.id).toBe(queued.id);
    const stale = await expectKilnError(bed.store.transaction((tx) => getLeasedJob(tx, { jobId: queued.id, attempt: 2 })), 'STALE_ATTEMPT');
    expect(stale.status).toBe(409);
    await expectKilnError(bed.store.transaction((tx) => getLeasedJob(tx, { jobId: 'job_missing', attempt: 1 })), 'NOT_FOUND');
    // Reported already: the same attempt still passes (so a racing retry is acknowledged), another does not.
    await bed.store.db.updateTable('jobs').set({ status: 'succeeded', output_refs: '{}' }).where('id', '=', queued.id).execute();
    expect((await bed.store.transaction((tx) => getLeasedJob(tx, { jobId: queued.id, attempt: 1 }))).output_refs).toBe('{}');
    await expectKilnError(bed.store.transaction((tx) => getLeasedJob(tx, { jobId: queued.id, attempt: 2 })), 'STALE_ATTEMPT');
  });

  it('requeues a lost job keeping its attempt (the next lease bumps it), and fails it with system_error once attempts are used', async () => {
    const r1 = await bed.runner('r1');
    const r2 = await bed.runner('r2');
    const queued = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0, maxAttempts: 2 });
    const [first] = await claim(r1);
    const lost = (await getJob(bed.store, queued.id))!;
    expect(await bed.store.transaction((tx) => requeueOrFail(tx, lost, 'runner went offline', t0))).toBe('requeued');
    const requeued = (await getJob(bed.store, queued.id))!;
    expect(requeued).toMatchObject({ status: 'queued', attempt: 1, runner_id: null, sandbox_id: null, lease_expires_at: null, error: 'runner went offline' });
    const firstSandbox = await bed.store.db.selectFrom('sandbox_instances').selectAll().where('id', '=', first!.sandboxId).executeTakeFirstOrThrow();
    expect(firstSandbox.status).toBe('failed');

    const [second] = await claim(r2);
    expect(second!.job.attempt).toBe(2);
    expect(second!.sandboxId).not.toBe(first!.sandboxId);
    const again = (await getJob(bed.store, queued.id))!;
    expect(await bed.store.transaction((tx) => requeueOrFail(tx, again, 'lease expired', t0))).toBe('failed');
    const failed = (await getJob(bed.store, queued.id))!;
    expect(failed).toMatchObject({ status: 'failed', verdict: 'system_error', attempt: 2, completed_at: toRfc3339(t0), lease_expires_at: null });
    expect(failed.error).toContain('no attempts left (2)');
    expect(await claim(r1)).toEqual([]);
  });

  it('finds expired leases and extends only leases the runner holds at their current attempt', async () => {
    const r1 = await bed.runner('r1');
    const r2 = await bed.runner('r2');
    const a = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    const b = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1 });
    await claim(r1, { freeSlots: 1 });
    await claim(r2, { freeSlots: 1 });
    const later = t0 + LEASE_TTL_MS - 1;
    await bed.store.transaction((tx) =>
      extendLeases(tx, {
        runnerId: r1,
        // b is r2's; a at attempt 2 is not a lease anyone holds.
        leases: [{ job_id: a.id, attempt: 1 }, { job_id: b.id, attempt: 1 }],
        nowMs: later,
        leaseTtlMs: LEASE_TTL_MS,
      }),
    );
    expect((await getJob(bed.store, a.id))!.lease_expires_at).toBe(toRfc3339(later + LEASE_TTL_MS));
    expect((await getJob(bed.store, b.id))!.lease_expires_at).toBe(toRfc3339(t0 + LEASE_TTL_MS));
    expect(await expiredLeases(bed.store, t0 + LEASE_TTL_MS)).toEqual([]);
    expect((await expiredLeases(bed.store, t0 + LEASE_TTL_MS + 1)).map((j) => j.id)).toEqual([b.id]);
  });

  it('tells a runner which of its leases to stop: canceled, or lost', async () => {
    const r1 = await bed.runner('r1');
    const r2 = await bed.runner('r2');
    const kept = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 });
    const canceled = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1 });
    const taken = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2 });
    await claim(r1, { freeSlots: 3 });
    await bed.store.db.updateTable('jobs').set({ status: 'canceled' }).where('id', '=', canceled.id).execute();
    // `taken` is lost by r1 and leased again to r2 (attempt 2).
    const lost = (await getJob(bed.store, taken.id))!;
    await bed.store.transaction((tx) => requeueOrFail(tx, lost, 'lease expired', t0));
    await claim(r2);
    const leases = [
      { job_id: kept.id, attempt: 1 },
      { job_id: canceled.id, attempt: 1 },
      { job_id: taken.id, attempt: 1 },
      { job_id: 'job_unknown', attempt: 1 },
    ];
    const stop = await leasesToStop(bed.store, { runnerId: r1, leases });
    expect(stop).toEqual([
      { job_id: canceled.id, attempt: 1, reason: 'canceled' },
      { job_id: taken.id, attempt: 1, reason: 'lost' },
      { job_id: 'job_unknown', attempt: 1, reason: 'lost' },
    ]);
    expect(await leasesToStop(bed.store, { runnerId: r2, leases: [{ job_id: taken.id, attempt: 2 }] })).toEqual([]);
    expect(await leasesToStop(bed.store, { runnerId: r1, leases: [] })).toEqual([]);
  });
});
