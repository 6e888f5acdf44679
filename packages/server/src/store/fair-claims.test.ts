import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertQueuedJob, openJobBed, type JobBed, type TestTenant } from '../services/job-testing.js';
import { claimJobs, type ClaimRequest } from './jobs.js';
import { DB_KINDS } from './testing.js';

/** Issue 7, point 2: one tenant's backlog delays only that tenant; the fleet is shared round robin. */
describe.each(DB_KINDS)('fair claims on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let globex: TestTenant;
  let initech: TestTenant;
  let t0: number;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
    globex = await bed.newTenant('globex');
    initech = await bed.newTenant('initech');
  });
  afterAll(() => bed.close());
  beforeEach(async () => {
    await bed.reset();
    await bed.store.db.updateTable('tenants').set({ status: 'active', last_served_turn: 0 }).execute();
    await bed.store.db.updateTable('agents').set({ status: 'active' }).execute();
    t0 = bed.clock.nowMs();
  });

  async function claim(runnerId: string, overrides: Partial<ClaimRequest> = {}) {
    return bed.store.transaction((tx) =>
      claimJobs(tx, { runnerId, zone: 'default', languages: ['python'], freeSlots: 1, nowMs: t0, leaseTtlMs: 15_000, ...overrides }),
    );
  }
  const tenantsOf = (claimed: { job: { tenant_id: string } }[]) => claimed.map((c) => c.job.tenant_id);
  async function queue(tenant: TestTenant, count: number, values: { fromMs: number; maxRunningJobs?: number; language?: string; zone?: string | null }) {
    const rows = [];
    for (let i = 0; i < count; i++) {
      rows.push(await insertQueuedJob(bed.store, tenant, { requestedAtMs: values.fromMs + i, ...values }));
    }
    return rows;
  }
  const statusCounts = async (tenant: TestTenant) => {
    const rows = await bed.store.db.selectFrom('jobs').select('status').where('tenant_id', '=', tenant.tenantId).execute();
    return rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }), {});
  };

  it("claims another tenant's job at once past a tenant at its cap with 50 older queued jobs", async () => {
    const runner = await bed.runner('r1');
    // acme: at its cap of 2, with 50 more queued, all older than globex's job.
    await queue(acme, 52, { fromMs: t0, maxRunningJobs: 2 });
    expect(await claim(runner, { freeSlots: 2 })).toHaveLength(2);
    const [mine] = await queue(globex, 1, { fromMs: t0 + 1000 });
    // One free slot: the old claim read only the oldest few rows (all acme's, all capped) and gave nothing.
    const next = await claim(runner, { freeSlots: 1 });
    expect(next.map((c) => c.job.id)).toEqual([mine!.id]);
    expect(await statusCounts(acme)).toEqual({ running: 2, queued: 50 });
    // With more slots than anyone can use, acme stays at its cap.
    expect(await claim(runner, { freeSlots: 8 })).toEqual([]);
    expect(await statusCounts(acme)).toEqual({ running: 2, queued: 50 });
  });

  it('alternates between tenants with backlogs, one job each per round (round robin)', async () => {
    const runner = await bed.runner('r1');
    // acme's backlog is older than globex's: oldest-first would give acme everything.
    await queue(acme, 10, { fromMs: t0, maxRunningJobs: 100 });
    await queue(globex, 10, { fromMs: t0 + 100, maxRunningJobs: 100 });
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push(...tenantsOf(await claim(runner)));
    expect(order).toHaveLength(6);
    for (let i = 1; i < order.length; i++) expect(order[i], `claim ${i}`).not.toBe(order[i - 1]);
    // Several slots in one claim are shared too: 2 each of 4.
    const four = tenantsOf(await claim(runner, { freeSlots: 4 }));
    expect(four.filter((t) => t === acme.tenantId)).toHaveLength(2);
    expect(four.filter((t) => t === globex.tenantId)).toHaveLength(2);
  });

  it('serves a newly arrived tenant before those served recently, and each tenant oldest first', async () => {
    const runner = await bed.runner('r1');
    const acmeJobs = await queue(acme, 3, { fromMs: t0, maxRunningJobs: 100 });
    const globexJobs = await queue(globex, 3, { fromMs: t0 + 10, maxRunningJobs: 100 });
    const first = await claim(runner, { freeSlots: 2 });
    expect(first.map((c) => c.job.id).sort()).toEqual([acmeJobs[0]!.id, globexJobs[0]!.id].sort());
    const [late] = await queue(initech, 1, { fromMs: t0 + 500 });
    const next = await claim(runner, { freeSlots: 1 });
    expect(next.map((c) => c.job.id)).toEqual([late!.id]);
    const rest = await claim(runner, { freeSlots: 10 });
    // Answered oldest first; each tenant's own jobs in order.
    expect(rest.map((c) => c.job.id)).toEqual([acmeJobs[1]!.id, acmeJobs[2]!.id, globexJobs[1]!.id, globexJobs[2]!.id]);
  });

  it("looks past a tenant's queued jobs of languages and zones the runner does not serve", async () => {
    const runner = await bed.runner('r1', { languages: ['python'] });
    await queue(acme, 30, { fromMs: t0, language: 'ruby' });
    await queue(acme, 30, { fromMs: t0 + 100, zone: 'eu' });
    const [python] = await queue(acme, 1, { fromMs: t0 + 200 });
    const [zoned] = await queue(globex, 1, { fromMs: t0 + 300, zone: 'default' });
    const claimed = await claim(runner, { freeSlots: 5 });
    expect(claimed.map((c) => c.job.id)).toEqual([python!.id, zoned!.id]);
  });

  it("takes a tenant's oldest job this runner can run, among the first few of its queue or far behind them", async () => {
    const runner = await bed.runner('r1', { languages: ['python'] });
    const versions = { python: ['3.11'] };
    // Near the head (the one-seek window): a ruby job and a python job for a version this runner lacks.
    await queue(acme, 1, { fromMs: t0, language: 'ruby' });
    await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 1, version: '3.12' });
    const near = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 2, version: '3.11' });
    const later = await insertQueuedJob(bed.store, acme, { requestedAtMs: t0 + 3 });
    expect((await claim(runner, { versions })).map((c) => c.job.id)).toEqual([near.id]);
    expect((await claim(runner, { versions })).map((c) => c.job.id)).toEqual([later.id]);
    // Far behind: 20 jobs it cannot run, then one it can (found by the walk over what the runner offers).
    await queue(globex, 20, { fromMs: t0 + 10, zone: 'eu' });
    const [far] = await queue(globex, 1, { fromMs: t0 + 40 });
    expect((await claim(runner, { versions })).map((c) => c.job.id)).toEqual([far!.id]);
    expect(await claim(runner, { versions, freeSlots: 5 })).toEqual([]);
  });

  it('never hands out a job of a suspended tenant or of a disabled agent, and claims the tenant\'s next job instead', async () => {
    const runner = await bed.runner('r1');
    // Work that a submission racing the status change left queued.
    await queue(acme, 3, { fromMs: t0 });
    await bed.store.db.updateTable('tenants').set({ status: 'suspended' }).where('id', '=', acme.tenantId).execute();
    const [agentJob] = await queue(globex, 1, { fromMs: t0 + 10 });
    await bed.store.db.updateTable('jobs').set({ agent_id: globex.agentId }).where('id', '=', agentJob!.id).execute();
    await bed.store.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', globex.agentId).execute();
    const [adminJob] = await queue(globex, 1, { fromMs: t0 + 20 });
    const claimed = await claim(runner, { freeSlots: 10 });
    expect(claimed.map((c) => c.job.id)).toEqual([adminJob!.id]);
    expect(await statusCounts(acme)).toEqual({ queued: 3 });
    expect((await bed.store.db.selectFrom('jobs').select('status').where('id', '=', agentJob!.id).executeTakeFirstOrThrow()).status).toBe('queued');
  });

  it(
    'keeps every cap and hands each job out once when claims for several tenants run concurrently',
    async () => {
      const runners: string[] = [];
      for (let i = 0; i < 6; i++) runners.push(await bed.runner(`r${i}`));
      const tenants = [acme, globex, initech];
      for (const [i, tenant] of tenants.entries()) await queue(tenant, 20, { fromMs: t0 + i, maxRunningJobs: 4 });
      const handedOut: string[] = [];
      // On PostgreSQL these are 6 transactions at once, each taking tenant locks in its own turn order:
      // a deadlock would fail a claim with an error.
      for (let round = 0; round < 5; round++) {
        const results = await Promise.all(runners.map((r) => claim(r, { freeSlots: 3 })));
        for (const claimed of results) handedOut.push(...claimed.map((c) => c.job.id));
      }
      expect(new Set(handedOut).size).toBe(handedOut.length);
      expect(handedOut).toHaveLength(12);
      for (const tenant of tenants) expect(await statusCounts(tenant)).toEqual({ running: 4, queued: 16 });
    },
    30_000,
  );
});
