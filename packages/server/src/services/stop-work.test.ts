import { toRfc3339, type HeartbeatResponse, type Job } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getRunner } from '../store/fleet.js';
import { getJob } from '../store/jobs.js';
import { DB_KINDS } from '../store/testing.js';
import { changeAgentStatus, createAgent } from './agents.js';
import type { Principal } from './context.js';
import { completeJob } from './job-completion.js';
import { auditOf, expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, submitJob } from './jobs.js';
import { leaseWork, runnerHeartbeat } from './runner-protocol.js';
import { changeTenantStatus } from './tenants.js';

/**
 * Issue 7, point 5: a suspended tenant's running jobs finished (and it could not cancel them itself); a
 * disabled agent's queued job still ran.
 */
describe.each(DB_KINDS)('suspension and disabling stop the work on %s', (kind) => {
  let bed: JobBed;
  const operator: Principal = { kind: 'operator' };
  let n = 0;

  beforeAll(async () => {
    bed = await openJobBed(kind);
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  const lease = async (runnerId: string, freeSlots: number) =>
    (await leaseWork(bed.deps, { runner_id: runnerId, free_slots: freeSlots, wait_ms: 0 })).leases;
  const statusOf = async (job: Job) => (await getJob(bed.store, job.id))!;

  /**
   * A heartbeat for `leases` that waits in its long poll (an interval longer than the test may take):
   * only a wake-up can make it answer `stop` in time. Resolves once it waits (with the answer to come
   * wrapped, since an async function would wait for a promise it returns).
   */
  async function waitingHeartbeat(runnerId: string, leases: { job_id: string; attempt: number }[]): Promise<{ answer: Promise<HeartbeatResponse> }> {
    const fleet = bed.deps.fleet;
    bed.deps.fleet = { ...fleet, heartbeatIntervalMs: 600_000 };
    bed.clock.advance(1000);
    const beat = runnerHeartbeat(bed.deps, { runner_id: runnerId, leases, sandboxes: [] }).finally(() => (bed.deps.fleet = fleet));
    const beatAt = toRfc3339(bed.clock.nowMs());
    for (let i = 0; i < 500 && (await getRunner(bed.store, runnerId))!.last_heartbeat_at !== beatAt; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    return { answer: beat };
  }

  it(
    "suspending a tenant cancels its queued jobs, stops its running ones through their runners' heartbeats, and audits once with counts",
    async () => {
      const victim = await bed.newTenant(`victim-${n++}`);
      const bystander = await bed.newTenant(`bystander-${n++}`);
      const r1 = await bed.runner('node-a', { capacity: 2 });
      const running = [await submitJob(bed.deps, victim.agent, jobRequest()), await submitJob(bed.deps, victim.admin, jobRequest())];
      expect(await lease(r1, 2)).toHaveLength(2);
      const queued: Job[] = [];
      for (let i = 0; i < 30; i++) queued.push(await submitJob(bed.deps, victim.admin, jobRequest()));
      const theirs = await submitJob(bed.deps, bystander.admin, jobRequest());
      const auditBefore = await bed.store.db.selectFrom('audit_events').select('id').where('tenant_id', '=', victim.tenantId).execute();

      const beat = await waitingHeartbeat(
        r1,
        running.map((j) => ({ job_id: j.id, attempt: 1 })),
      );
      await changeTenantStatus(bed.deps, operator, victim.tenantId, 'suspended');
      // The runner's waiting heartbeat answers at once: kill both sandboxes.
      expect((await beat.answer).stop).toEqual(running.map((j) => ({ job_id: j.id, attempt: 1, reason: 'canceled' })));

      for (const job of running) {
        expect(await statusOf(job)).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'tenant_suspended', runner_id: r1, lease_expires_at: null });
      }
      for (const job of queued) {
        const row = await statusOf(job);
        expect(row).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'tenant_suspended', runner_id: null, started_at: null });
        expect(row.completed_at).not.toBeNull();
      }
      expect((await statusOf(theirs)).status).toBe('queued');
      // One event for the change, with the counts: not one per job.
      const auditAfter = await bed.store.db.selectFrom('audit_events').select(['action', 'details']).where('tenant_id', '=', victim.tenantId).execute();
      expect(auditAfter).toHaveLength(auditBefore.length + 1);
      const [suspend] = await auditOf(bed.store, 'tenant.suspend', victim.tenantId);
      expect(JSON.parse(suspend!.details)).toMatchObject({ from: 'active', to: 'suspended', canceled_jobs: 30, stopped_jobs: 2 });

      // The runner's report of the killed sandboxes is taken; the jobs stay canceled.
      for (const job of running) {
        await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1, { verdict: 'canceled', exit_status: { code: null, signal: 'SIGKILL' } }));
        expect(await statusOf(job)).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'tenant_suspended' });
      }
      // Its freed slots go to the other tenant, never back to the suspended one.
      expect((await lease(r1, 2)).map((l) => l.job_id)).toEqual([theirs.id]);
      const sandboxes = await bed.store.db.selectFrom('sandbox_instances').select(['job_id', 'status']).execute();
      expect(sandboxes.filter((s) => running.some((j) => j.id === s.job_id)).map((s) => s.status)).toEqual(['terminated', 'terminated']);
    },
    20_000,
  );

  it("disabling an agent cancels its queued jobs and stops its running one, leaving the tenant's other work", async () => {
    const tenant: TestTenant = await bed.newTenant(`agents-${n++}`);
    const r1 = await bed.runner('node-a', { capacity: 1 });
    const agentRunning = await submitJob(bed.deps, tenant.agent, jobRequest());
    expect(await lease(r1, 1)).toHaveLength(1);
    const agentQueued = await submitJob(bed.deps, tenant.agent, jobRequest());
    const adminQueued = await submitJob(bed.deps, tenant.admin, jobRequest());

    const beat = await waitingHeartbeat(r1, [{ job_id: agentRunning.id, attempt: 1 }]);
    await changeAgentStatus(bed.deps, tenant.admin, tenant.agentId, 'disabled');
    expect((await beat.answer).stop).toEqual([{ job_id: agentRunning.id, attempt: 1, reason: 'canceled' }]);
    expect(await statusOf(agentRunning)).toMatchObject({ status: 'canceled', error: 'agent_disabled', runner_id: r1 });
    expect(await statusOf(agentQueued)).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'agent_disabled', started_at: null });
    expect((await statusOf(adminQueued)).status).toBe('queued');
    const [disable] = await auditOf(bed.store, 'agent.disable', tenant.agentId);
    expect(JSON.parse(disable!.details)).toMatchObject({ canceled_jobs: 1, stopped_jobs: 1 });
    // The agent's job is never handed out; the tenant's other job is.
    await completeJob(bed.deps, await bed.holder(agentRunning.id), agentRunning.id, await bed.report(agentRunning.id, 1, { verdict: 'canceled' }));
    expect((await lease(r1, 1)).map((l) => l.job_id)).toEqual([adminQueued.id]);
    expect((await statusOf(agentQueued)).attempt).toBe(0);
  }, 20_000);

  it("leaves none of a tenant's jobs running or queued when its suspension races concurrent claims", async () => {
    const tenant = await bed.newTenant(`raced-${n++}`);
    const runners: string[] = [];
    for (let i = 0; i < 4; i++) runners.push(await bed.runner(`node-${i}`, { capacity: 5 }));
    for (let i = 0; i < 30; i++) await submitJob(bed.deps, tenant.admin, jobRequest());
    const [leases] = await Promise.all([
      Promise.all(runners.map((r) => lease(r, 5))),
      changeTenantStatus(bed.deps, operator, tenant.tenantId, 'suspended'),
    ]);
    const rows = await bed.store.db.selectFrom('jobs').select(['id', 'status']).where('tenant_id', '=', tenant.tenantId).execute();
    expect(rows.filter((r) => r.status !== 'canceled')).toEqual([]);
    // Whatever was leased before the suspension is among the canceled, and its runner is told to stop.
    for (const [i, leased] of leases.entries()) {
      if (leased.length === 0) continue;
      const answer = await runnerHeartbeat(bed.deps, { runner_id: runners[i]!, leases: leased.map((l) => ({ job_id: l.job_id, attempt: l.attempt })), sandboxes: [] });
      expect(answer.stop.map((s) => s.reason)).toEqual(leased.map(() => 'canceled'));
    }
  });

  it('lets a suspended tenant cancel its own jobs, and refuses its other writes', async () => {
    const tenant = await bed.newTenant(`canceler-${n++}`);
    await bed.runner('node-a');
    const agent = await createAgent(bed.deps, tenant.admin, { name: 'late', type: 'test' });
    const job = await submitJob(bed.deps, tenant.admin, jobRequest());
    // Keys carry the tenant's status as it is when the request authenticates.
    const suspended: Principal = { ...(tenant.admin as Extract<Principal, { kind: 'tenant' }>), tenantStatus: 'suspended' };
    expect(await cancelJob(bed.deps, suspended, job.id)).toMatchObject({ status: 'canceled', verdict: 'canceled' });
    expect(await auditOf(bed.store, 'job.cancel', job.id)).toHaveLength(1);
    await expectKilnError(submitJob(bed.deps, suspended, jobRequest()), 'TENANT_SUSPENDED');
    await expectKilnError(changeAgentStatus(bed.deps, suspended, agent.id, 'disabled'), 'TENANT_SUSPENDED');
  });

  it('never leaves a queued job behind when submissions race a suspension or a disable', async () => {
    const queuedOf = async (tenantId: string) =>
      (await bed.store.db.selectFrom('jobs').select('id').where('tenant_id', '=', tenantId).where('status', '=', 'queued').execute()).length;
    // The keys authenticated while their owner was active: only the submission's own check can refuse them.
    const agentTenant = await bed.newTenant(`submit-race-agent-${n++}`);
    const suspendedTenant = await bed.newTenant(`submit-race-tenant-${n++}`);
    await bed.runner('node-a');
    const burst = (who: Principal) => Array.from({ length: 20 }, () => submitJob(bed.deps, who, jobRequest()).catch((err: unknown) => err));
    const [agentResults, tenantResults] = await Promise.all([
      Promise.all(burst(agentTenant.agent)),
      Promise.all(burst(suspendedTenant.admin)),
      changeAgentStatus(bed.deps, agentTenant.admin, agentTenant.agentId, 'disabled'),
      changeTenantStatus(bed.deps, operator, suspendedTenant.tenantId, 'suspended'),
    ]);
    expect(await queuedOf(agentTenant.tenantId)).toBe(0);
    expect(await queuedOf(suspendedTenant.tenantId)).toBe(0);
    // Each submission either went in (and was canceled) or was refused with the owner's state.
    for (const result of agentResults) if (result instanceof Error) expect(result).toMatchObject({ code: 'AGENT_DISABLED' });
    for (const result of tenantResults) if (result instanceof Error) expect(result).toMatchObject({ code: 'TENANT_SUSPENDED' });
  });
});
