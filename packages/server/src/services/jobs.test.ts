import { DEFAULT_LIMITS, DEFAULT_RULESET, type Ruleset } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getJob } from '../store/jobs.js';
import { listFleetLanguages } from '../store/runners.js';
import { DB_KINDS } from '../store/testing.js';
import { changeAgentStatus, createAgent } from './agents.js';
import type { Principal } from './context.js';
import { sweepFleet } from './fleet.js';
import { auditOf, expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, getTenantJob, listTenantJobs, submitJob, waitForJob } from './jobs.js';
import { topics } from './notifier.js';
import { publishPolicy } from './policies.js';
import { leaseWork } from './runner-protocol.js';
import { completeJob } from './job-completion.js';

describe.each(DB_KINDS)('job submission and cancel on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let globex: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
    globex = await bed.newTenant('globex');
  });
  afterAll(() => bed.close());
  beforeEach(async () => {
    await bed.reset();
    await bed.runner('node-a', { languages: ['python', 'ruby'] });
  });

  const lease = (runnerId: string) => leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });
  const runnerId = async () => (await bed.store.db.selectFrom('runner_nodes').select('id').where('name', '=', 'node-a').executeTakeFirstOrThrow()).id;

  describe('submitJob', () => {
    it('queues a job pinned to the policy version in force, with the policy ceilings lowered by the request', async () => {
      const job = await submitJob(bed.deps, acme.admin, jobRequest({ limits: { memory_bytes: 64 * 1024 * 1024, wall_time_ms: DEFAULT_LIMITS.wall_time_ms } }));
      expect(job).toMatchObject({ status: 'queued', attempt: 0, tenant_id: acme.tenantId, agent_id: null, policy_id: acme.policyId, policy_version: 1 });
      const [created] = await auditOf(bed.store, 'job.create', job.id);
      expect(JSON.parse(created!.details)).toMatchObject({ policy_id: acme.policyId, policy_version: 1 });
      const [leased] = (await lease(await runnerId())).leases;
      expect(leased!.spec.limits).toEqual({ ...DEFAULT_LIMITS, memory_bytes: 64 * 1024 * 1024 });
    });

    it('keeps the pinned version when the policy changes after submission', async () => {
      const tenant = await bed.newTenant('pinning');
      const v2: Ruleset = { ...DEFAULT_RULESET, limits: { ...DEFAULT_LIMITS, cpu_time_ms: 2000 } };
      await publishPolicy(bed.deps, tenant.admin, tenant.policyId, { ruleset: v2, expected_version: 1 });
      const job = await submitJob(bed.deps, tenant.admin, jobRequest());
      await publishPolicy(bed.deps, tenant.admin, tenant.policyId, {
        ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_LIMITS, cpu_time_ms: 9000 } },
        expected_version: 2,
      });
      expect(job.policy_version).toBe(2);
      expect((await getJob(bed.store, job.id))!).toMatchObject({ policy_id: tenant.policyId, policy_version: 2 });
      const [leased] = (await lease(await runnerId())).leases;
      expect(leased!.spec.limits.cpu_time_ms).toBe(2000);
    });

    it('refuses a limit above the ceiling with POLICY_VIOLATION naming the field and the ceiling', async () => {
      const ceiling = DEFAULT_RULESET.limits.memory_bytes!;
      await submitJob(bed.deps, acme.admin, jobRequest({ limits: { memory_bytes: ceiling } }));
      const err = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ limits: { memory_bytes: ceiling + 1 } })), 'POLICY_VIOLATION');
      expect(err.status).toBe(422);
      expect(err.field).toBe('body.limits.memory_bytes');
      expect(err.extra).toMatchObject({ ceiling, requested: ceiling + 1, policy_id: acme.policyId, policy_version: 1 });
      expect(err.toProblem()).toMatchObject({ ceiling, field: 'body.limits.memory_bytes' });
      const pids = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ limits: { pids: DEFAULT_LIMITS.pids + 1 } })), 'POLICY_VIOLATION');
      expect(pids.field).toBe('body.limits.pids');
      expect(await bed.store.db.selectFrom('jobs').select('id').execute()).toHaveLength(1);
    });

    it('refuses a language the policy does not allow', async () => {
      const tenant = await bed.newTenant('python-only');
      await publishPolicy(bed.deps, tenant.admin, tenant.policyId, { ruleset: { ...DEFAULT_RULESET, languages: ['python'] }, expected_version: 1 });
      const err = await expectKilnError(submitJob(bed.deps, tenant.admin, jobRequest({ language: 'ruby' })), 'POLICY_VIOLATION');
      expect(err.field).toBe('body.language');
      expect(err.extra).toMatchObject({ allowed: ['python'] });
      // Acme's default policy allows ruby and the runner offers it.
      expect((await submitJob(bed.deps, acme.admin, jobRequest({ language: 'ruby' }))).language).toBe('ruby');
    });

    it('takes an alias for its language and a range for its version, as the runners advertise them', async () => {
      await bed.runner('node-c', {
        offers: [
          { name: 'c', version: '12.2.0', runtime: 'gcc', aliases: ['gcc', 'clang'], libraries: [] },
          { name: 'c', version: '16.0.6', runtime: 'clang', aliases: ['gcc', 'clang'], libraries: [] },
          { name: 'c', version: '11.3.0', runtime: 'gcc', aliases: ['gcc', 'clang'], libraries: [] },
          { name: 'python', version: '3.11.2', runtime: 'cpython', aliases: ['py', 'python3'], libraries: ['numpy', 'pandas'] },
        ],
      });
      const offers = await listFleetLanguages(bed.store);
      expect(offers.find((o) => o.name === 'c')).toMatchObject({
        versions: ['16.0.6', '12.2.0', '11.3.0'],
        aliases: ['clang', 'gcc'],
        runtimes: [
          { version: '16.0.6', runtime: 'clang' },
          { version: '12.2.0', runtime: 'gcc' },
          { version: '11.3.0', runtime: 'gcc' },
        ],
        runners: 1,
      });
      // Libraries are what EVERY runner offering the language has: node-a's python has none.
      expect(offers.find((o) => o.name === 'python')).toMatchObject({ aliases: ['py', 'python3'], libraries: [], runners: 2 });

      const py = await submitJob(bed.deps, acme.admin, jobRequest({ language: 'py' }));
      expect({ language: py.language, version: py.version }).toEqual({ language: 'python', version: null });
      const eleven = await submitJob(bed.deps, acme.admin, jobRequest({ language: 'gcc', version: '11' }));
      expect({ language: eleven.language, version: eleven.version }).toEqual({ language: 'c', version: '11.3.0' });
      const newest = await submitJob(bed.deps, acme.admin, jobRequest({ language: 'c', version: '*' }));
      expect(newest.version).toBe('16.0.6');
      const row = await bed.store.db.selectFrom('jobs').select(['language', 'language_version']).where('id', '=', eleven.id).executeTakeFirstOrThrow();
      expect(row).toEqual({ language: 'c', language_version: '11.3.0' });
      // A policy names languages, not aliases: an alias of an allowed language is allowed.
      const tenant = await bed.newTenant('python-by-alias');
      await publishPolicy(bed.deps, tenant.admin, tenant.policyId, { ruleset: { ...DEFAULT_RULESET, languages: ['python'] }, expected_version: 1 });
      expect((await submitJob(bed.deps, tenant.admin, jobRequest({ language: 'python3' }))).language).toBe('python');
      await expectKilnError(submitJob(bed.deps, tenant.admin, jobRequest({ language: 'clang' })), 'POLICY_VIOLATION');
    });

    it('refuses with UNSUPPORTED_LANGUAGE what no live runner offers', async () => {
      const lua = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ language: 'lua' })), 'UNSUPPORTED_LANGUAGE');
      expect(lua.field).toBe('body.language');
      expect(lua.message).toContain('python');
      const version = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ version: '2.7' })), 'UNSUPPORTED_LANGUAGE');
      expect(version.field).toBe('body.version');
      // The registered runners offer python 3.11.2: a prefix of it, a range or `*` resolves to it.
      for (const version of ['3.11', '3.x', '*', '>=3.10 <4', '^3.11.0', '3.11.2']) {
        expect((await submitJob(bed.deps, acme.admin, jobRequest({ version }))).version, version).toBe('3.11.2');
      }
      const notARange = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ version: 'latest-and-greatest' })), 'VALIDATION_FAILED');
      expect(notARange.field).toBe('body.version');
      expect((await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ version: '>=4' })), 'UNSUPPORTED_LANGUAGE')).extra).toMatchObject({
        offered: ['3.11.2'],
      });
      // Once the only runner is offline, nothing is offered.
      bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
      await sweepFleet(bed.deps);
      await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest()), 'UNSUPPORTED_LANGUAGE');
    });

    it('submits an agent key as its own agent, and refuses it naming another', async () => {
      const job = await submitJob(bed.deps, acme.agent, jobRequest());
      expect(job.agent_id).toBe(acme.agentId);
      const [created] = await auditOf(bed.store, 'job.create', job.id);
      expect(created!.actor_id).toBe(acme.agentId);
      const other = await createAgent(bed.deps, acme.admin, { name: `other-${kind}-${Date.now()}`, type: 'test' });
      const err = await expectKilnError(submitJob(bed.deps, acme.agent, jobRequest({ agent_id: other.id })), 'FORBIDDEN');
      expect(err.field).toBe('body.agent_id');
      expect((await submitJob(bed.deps, acme.agent, jobRequest({ agent_id: acme.agentId }))).agent_id).toBe(acme.agentId);
    });

    it('lets a tenant admin name an active agent, not a disabled or unknown one', async () => {
      const agent = await createAgent(bed.deps, acme.admin, { name: `named-${kind}-${Date.now()}`, type: 'test' });
      expect((await submitJob(bed.deps, acme.admin, jobRequest({ agent_id: agent.id }))).agent_id).toBe(agent.id);
      await changeAgentStatus(bed.deps, acme.admin, agent.id, 'disabled');
      const err = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ agent_id: agent.id })), 'AGENT_DISABLED');
      expect(err.status).toBe(403);
      expect(err.field).toBe('body.agent_id');
      await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ agent_id: globex.agentId })), 'NOT_FOUND');
    });

    it('refuses a suspended tenant, a foreign policy and callers that are no tenant', async () => {
      const suspended: Principal = { ...(acme.admin as Extract<Principal, { kind: 'tenant' }>), tenantStatus: 'suspended' };
      const err = await expectKilnError(submitJob(bed.deps, suspended, jobRequest()), 'TENANT_SUSPENDED');
      expect(err.status).toBe(403);
      const policy = await expectKilnError(submitJob(bed.deps, acme.admin, jobRequest({ policy_id: globex.policyId })), 'NOT_FOUND');
      expect(policy.field).toBe('body.policy_id');
      await expectKilnError(submitJob(bed.deps, { kind: 'operator' }, jobRequest()), 'FORBIDDEN');
      expect(await bed.store.db.selectFrom('jobs').select('id').execute()).toEqual([]);
    });

    it('wakes lease polls: a submission publishes new work', async () => {
      const woken = bed.deps.notifier.next(topics.work, 10_000);
      await submitJob(bed.deps, acme.admin, jobRequest());
      await woken;
      expect((await lease(await runnerId())).leases).toHaveLength(1);
    });
  });

  describe('reading and cancel', () => {
    it('cancels a queued job at once; it is never leased', async () => {
      const job = await submitJob(bed.deps, acme.admin, jobRequest());
      const canceled = await cancelJob(bed.deps, acme.admin, job.id);
      expect(canceled).toMatchObject({ status: 'canceled', verdict: 'canceled' });
      expect(canceled.completed_at).not.toBeNull();
      const [audit] = await auditOf(bed.store, 'job.cancel', job.id);
      expect(JSON.parse(audit!.details)).toMatchObject({ from: 'queued' });
      expect((await lease(await runnerId())).leases).toEqual([]);
    });

    it('cancels a running job and tells its runner', async () => {
      const runner = await runnerId();
      const job = await submitJob(bed.deps, acme.admin, jobRequest());
      await lease(runner);
      const told = bed.deps.notifier.next(topics.runner(runner), 10_000);
      // On PostgreSQL the lease's own `running` message may arrive first: wait for the canceled one.
      let unsubscribe = () => {};
      const view = new Promise((resolve) => {
        unsubscribe = bed.deps.notifier.subscribe(topics.job(job.id), (p) => {
          if ((p as { job?: { status?: string } }).job?.status === 'canceled') resolve(p);
        });
      });
      expect((await cancelJob(bed.deps, acme.admin, job.id)).status).toBe('canceled');
      await told;
      expect(await view).toMatchObject({ type: 'status', job: { id: job.id, status: 'canceled', verdict: 'canceled' } });
      unsubscribe();
    });

    it('answers a cancel of a finished job with the job unchanged (idempotent), and another tenant’s job with 404', async () => {
      const runner = await runnerId();
      const job = await submitJob(bed.deps, acme.admin, jobRequest());
      await lease(runner);
      await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1));
      const before = await getTenantJob(bed.deps, acme.admin, job.id);
      expect(await cancelJob(bed.deps, acme.admin, job.id)).toEqual(before);
      expect(await cancelJob(bed.deps, acme.admin, job.id)).toEqual(before);
      expect((await getJob(bed.store, job.id))!.status).toBe('succeeded');
      expect(await auditOf(bed.store, 'job.cancel', job.id)).toEqual([]);
      const queued = await submitJob(bed.deps, acme.admin, jobRequest());
      await expectKilnError(cancelJob(bed.deps, globex.admin, queued.id), 'NOT_FOUND');
      await expectKilnError(getTenantJob(bed.deps, globex.admin, queued.id), 'NOT_FOUND');
      await expectKilnError(cancelJob(bed.deps, acme.admin, 'job_missing'), 'NOT_FOUND');
      expect((await getJob(bed.store, queued.id))!.status).toBe('queued');
      expect(await auditOf(bed.store, 'job.cancel', queued.id)).toEqual([]);
    });

    it("lists a tenant's jobs; an agent key sees its own only", async () => {
      const byAdmin = await submitJob(bed.deps, acme.admin, jobRequest());
      const byAgent = await submitJob(bed.deps, acme.agent, jobRequest());
      await submitJob(bed.deps, globex.admin, jobRequest());
      const all = await listTenantJobs(bed.deps, acme.admin, { limit: 10 });
      expect(all.items.map((j) => j.id)).toEqual([byAgent.id, byAdmin.id]);
      const mine = await listTenantJobs(bed.deps, acme.agent, { limit: 10 });
      expect(mine.items.map((j) => j.id)).toEqual([byAgent.id]);
    });

    it('waitForJob answers once the job finishes', async () => {
      const runner = await runnerId();
      const job = await submitJob(bed.deps, acme.admin, jobRequest());
      const waiting = waitForJob(bed.deps, acme.admin, job.id, 10_000);
      await lease(runner);
      await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1, { stdoutText: 'done\n' }));
      expect(await waiting).toMatchObject({ id: job.id, status: 'succeeded', stdout: 'done\n' });
    });
  });
});
