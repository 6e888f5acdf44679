import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

/**
 * Issue 7, point 5, on the real server and runner: a suspended tenant's running job finished, and a
 * disabled agent's queued job still ran. One runner slot, so a second job waits in the queue.
 */
const SLEEPER = 'import time\nprint("started", flush=True)\ntime.sleep(60)';

describe.each<DbKind>(['sqlite', 'postgres'])('suspension and disabling end to end (%s)', (db) => {
  const kiln = new KilnSystem(db);

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 1 });
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  const running = (client: KilnClient, id: string) =>
    eventually('the job to run', async () => (await client.jobs.get(id)).status === 'running', 20_000);
  const settled = (client: KilnClient, id: string) =>
    eventually('the sandbox to stop and the runner to report', async () => {
      const job = await client.jobs.get(id);
      return job.output_refs !== null ? job : undefined;
    }, 10_000);
  const sandboxesOf = async (jobId: string) => (await kiln.operator.sandboxes.list({ job_id: jobId })).items.map((s) => s.status);

  it('suspending a tenant stops its running job at once and cancels its queued one', async () => {
    const { tenant, admin, agentClient } = await kiln.newTenant();
    const sleeper = await agentClient.jobs.create({ language: 'python', code: SLEEPER });
    await running(agentClient, sleeper.id);
    const waiting = await agentClient.jobs.create({ language: 'python', code: 'print("never")' });

    expect((await kiln.operator.tenants.suspend(tenant.id)).status).toBe('suspended');
    // Reads still work for a suspended tenant.
    expect(await admin.jobs.get(sleeper.id)).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'tenant_suspended' });
    const stopped = await settled(admin, sleeper.id);
    expect(stopped).toMatchObject({ status: 'canceled', error: 'tenant_suspended' });
    // Killed, not run to the end of its 60 s sleep.
    expect(stopped.resource_usage!.wall_time_ms).toBeLessThan(10_000);
    expect(await sandboxesOf(sleeper.id)).toEqual(['terminated']);

    expect(await admin.jobs.get(waiting.id)).toMatchObject({ status: 'canceled', verdict: 'canceled', started_at: null, error: 'tenant_suspended' });
    expect(await sandboxesOf(waiting.id)).toEqual([]);
    const audit = await kiln.operator.audit.list({ action: 'tenant.suspend', resource_id: tenant.id });
    expect(audit.items).toHaveLength(1);
    expect(audit.items[0]!.details).toMatchObject({ canceled_jobs: 1, stopped_jobs: 1 });
  }, 60_000);

  it("a disabled agent's running job is stopped and its queued job never runs", async () => {
    const { admin, agent, agentClient } = await kiln.newTenant();
    const sleeper = await agentClient.jobs.create({ language: 'python', code: SLEEPER });
    await running(agentClient, sleeper.id);
    const waiting = await agentClient.jobs.create({ language: 'python', code: 'print("never")' });

    await admin.agents.disable(agent.id);
    const stopped = await settled(admin, sleeper.id);
    expect(stopped).toMatchObject({ status: 'canceled', verdict: 'canceled', error: 'agent_disabled' });
    expect(await sandboxesOf(sleeper.id)).toEqual(['terminated']);

    // The runner's slot is free again and takes the next job; the disabled agent's job is not it.
    const after = await admin.jobs.createAndWait({ language: 'python', code: 'print("after")' });
    expect(after).toMatchObject({ status: 'succeeded', stdout: 'after\n' });
    expect(await admin.jobs.get(waiting.id)).toMatchObject({ status: 'canceled', started_at: null, error: 'agent_disabled' });
    expect(await sandboxesOf(waiting.id)).toEqual([]);
  }, 60_000);
});
