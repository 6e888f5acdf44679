import type { Job } from '@kiln/core';
import type { KilnClient } from '@kiln/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

const isTerminal = (j: Job) => j.status === 'succeeded' || j.status === 'failed' || j.status === 'canceled';

async function allJobs(client: KilnClient): Promise<Job[]> {
  const jobs: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.jobs.list({ limit: 200, ...(cursor ? { cursor } : {}) });
    jobs.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return jobs;
}

/** How many times the audit says each job completed: the exactly-once check. */
async function completionsPerJob(client: KilnClient): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let cursor: string | undefined;
  do {
    const page = await client.audit.list({ action: 'job.complete', limit: 200, ...(cursor ? { cursor } : {}) });
    for (const e of page.items) {
      if (e.outcome === 'success') counts.set(e.resource_id!, (counts.get(e.resource_id!) ?? 0) + 1);
    }
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return counts;
}

describe.each<DbKind>(['sqlite', 'postgres'])('the runner fleet (%s)', (db) => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('places jobs by zone and drains a runner', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'east', zone: 'east', capacity: 2 });
    await kiln.startRunner({ name: 'west', zone: 'west', capacity: 2 });
    const { agentClient } = await kiln.newTenant();
    const runners = (await kiln.operator.runners.list()).items;
    const byName = new Map(runners.map((r) => [r.name, r.id]));
    for (const zone of ['east', 'west', 'east', 'west']) {
      const job = await agentClient.jobs.createAndWait({ language: 'python', code: 'print(1)', zone });
      expect(job.status).toBe('succeeded');
      const sandboxes = await kiln.operator.sandboxes.list({ job_id: job.id });
      expect(sandboxes.items.map((s) => s.runner_id)).toEqual([byName.get(zone)]);
      expect(sandboxes.items[0]!.status).toBe('terminated');
    }

    await kiln.operator.runners.drain(byName.get('east')!);
    const queued = await agentClient.jobs.create({ language: 'python', code: 'print(1)', zone: 'east' });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await agentClient.jobs.get(queued.id)).status).toBe('queued');
    const elsewhere = await agentClient.jobs.createAndWait({ language: 'python', code: 'print(2)' });
    const placed = await kiln.operator.sandboxes.list({ job_id: elsewhere.id });
    expect(placed.items[0]!.runner_id).toBe(byName.get('west'));
  }, 120_000);

  it('finishes a job on another runner when its runner is killed mid-job', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const first = await kiln.startRunner({ name: 'doomed', zone: 'z', capacity: 1 });
    const { agentClient } = await kiln.newTenant();
    const job = await agentClient.jobs.create({
      language: 'python',
      code: 'import time\nprint("working", flush=True)\ntime.sleep(3)\nprint("done")',
    });
    await eventually('the job to start on the doomed runner', async () => (await agentClient.jobs.get(job.id)).status === 'running');
    await new Promise((r) => setTimeout(r, 500));
    await first.kill();
    await kiln.startRunner({ name: 'rescuer', zone: 'z', capacity: 1 });
    const done = await eventually(
      'the job to finish on the rescuer',
      async () => {
        const j = await agentClient.jobs.get(job.id);
        return isTerminal(j) && j.output_refs ? j : undefined;
      },
      40_000,
    );
    expect(done).toMatchObject({ status: 'succeeded', attempt: 2, stdout: 'working\ndone\n' });
    const sandboxes = (await kiln.operator.sandboxes.list({ job_id: job.id })).items;
    const runners = new Map((await kiln.operator.runners.list()).items.map((r) => [r.id, r]));
    expect(sandboxes.map((s) => [runners.get(s.runner_id)!.name, s.status])).toEqual([
      ['doomed', 'failed'],
      ['rescuer', 'terminated'],
    ]);
    expect([...runners.values()].find((r) => r.name === 'doomed')!.status).toBe('offline');
    expect((await completionsPerJob(agentClient)).get(job.id)).toBe(1);
  }, 120_000);

  it('ends every job exactly once when the server is killed under load and restarted', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'a', capacity: 2 });
    const { agentClient, admin } = await kiln.newTenant();
    const submitted: string[] = [];
    for (let i = 0; i < 30; i++) {
      const job = await agentClient.jobs.create({ language: 'python', code: `import time\ntime.sleep(0.05)\nprint(${i})` });
      submitted.push(job.id);
    }
    await kiln.killServer();
    await new Promise((r) => setTimeout(r, 500));
    await kiln.startServer();
    const jobs = await eventually(
      'every job to end after the restart',
      async () => {
        const all = await allJobs(agentClient);
        return all.length === submitted.length && all.every((j) => isTerminal(j) && j.output_refs) ? all : undefined;
      },
      90_000,
    );
    const byId = new Map(jobs.map((j) => [j.id, j]));
    for (const [i, id] of submitted.entries()) {
      expect(byId.get(id)).toMatchObject({ status: 'succeeded', stdout: `${i}\n` });
    }
    const completions = await completionsPerJob(agentClient);
    expect(submitted.map((id) => completions.get(id))).toEqual(submitted.map(() => 1));
    expect((await admin.audit.verify()).ok).toBe(true);
  }, 150_000);

  it('runs a burst of 200 jobs on two runners, each to completion once', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'one', capacity: 2 });
    await kiln.startRunner({ name: 'two', capacity: 2 });
    const { agentClient, admin } = await kiln.newTenant();
    const ids = await Promise.all(
      Array.from({ length: 200 }, (_, i) => agentClient.jobs.create({ language: 'bash', code: `echo ${i}` }).then((j) => j.id)),
    );
    const jobs = await eventually(
      'the burst to finish',
      async () => {
        const all = await allJobs(agentClient);
        return all.filter((j) => isTerminal(j) && j.output_refs).length === 200 ? all : undefined;
      },
      120_000,
    );
    expect(new Set(jobs.map((j) => j.id))).toEqual(new Set(ids));
    expect(jobs.every((j) => j.status === 'succeeded' && j.attempt === 1)).toBe(true);
    const completions = await completionsPerJob(agentClient);
    expect(ids.every((id) => completions.get(id) === 1)).toBe(true);
    const sandboxes = await kiln.operator.sandboxes.list({ limit: 200 });
    const perRunner = new Set(sandboxes.items.map((s) => s.runner_id));
    expect(perRunner.size).toBe(2);
    expect((await admin.audit.verify()).ok).toBe(true);
  }, 180_000);
});
