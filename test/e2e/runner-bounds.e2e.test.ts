import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem, type DbKind } from './support/kiln-system.js';

/**
 * Issue 7, point 1: no input from a tenant can stall a runner. The collect glob below, turned into a
 * backtracking regex, froze the runner's event loop on a 60-character name of `a`s: heartbeats stopped,
 * the job was requeued and froze the next runner too. One runner with one slot here, so every job after
 * the attack runs on the node that took it.
 */
const ATTACK_GLOB = '*a*a*a*a*a*a*a*a*a*a*a*a*b';

describe.each<DbKind>(['sqlite', 'postgres'])('a poisoned job never takes a runner with it (%s)', (db) => {
  const kiln = new KilnSystem(db);
  let agentClient: KilnClient;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'solo', capacity: 1 });
    ({ agentClient } = await kiln.newTenant());
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  const runner = async () => (await kiln.operator.runners.list()).items.find((r) => r.name === 'solo')!;

  it('the exact attack ends at its first attempt, the runner stays healthy, and the next job runs', async () => {
    const attack = await agentClient.jobs.createAndWait({
      language: 'python',
      code: `open("${'a'.repeat(60)}", "w").close()\nprint("made")`,
      collect: [ATTACK_GLOB],
      limits: { wall_time_ms: 10_000 },
    });
    expect(attack).toMatchObject({ status: 'succeeded', verdict: 'ok', attempt: 1, stdout: 'made\n' });
    expect(attack.output_refs?.artifacts).toEqual([]);
    expect((await runner()).status).toBe('healthy');

    const next = await agentClient.jobs.createAndWait({ language: 'python', code: 'print("after")' });
    expect(next).toMatchObject({ status: 'succeeded', stdout: 'after\n', attempt: 1 });
  }, 60_000);

  it('many collected files still make a report the control plane takes: the job ends at its first attempt', async () => {
    // 40 files of 60 KiB (each small enough to ride inline) and 400 with 200-character names, under the
    // default policy (32 artifacts): all inline, the report would be far over the server's body limit.
    const job = await agentClient.jobs.createAndWait({
      language: 'python',
      code: [
        'import os',
        'os.makedirs("out/long", exist_ok=True)',
        'for i in range(40): open("out/f%02d" % i, "wb").write(os.urandom(60 * 1024))',
        'for i in range(400): open("out/long/%s%03d" % ("n" * 197, i), "w").close()',
        'print("made")',
      ].join('\n'),
      limits: { wall_time_ms: 20_000 },
    });
    expect(job).toMatchObject({ status: 'succeeded', verdict: 'ok', attempt: 1, stdout: 'made\n' });
    expect(job.output_refs?.artifacts).toHaveLength(32);
    expect(job.rejected_artifacts!.length).toBeLessThanOrEqual(101);
    expect(job.rejected_artifacts!.at(-1)!.reason).toMatch(/more files refused/);
  }, 60_000);

  it('a workspace of 60,000 files fails its job as output_limit with the reason; heartbeats go on', async () => {
    const before = await runner();
    const flood = await agentClient.jobs.createAndWait({
      language: 'python',
      code: 'import os\nos.mkdir("out")\nfor i in range(60000): os.close(os.open("out/f%05d" % i, os.O_CREAT | os.O_WRONLY))\nprint("flooded")',
      collect: ['**'],
      limits: { wall_time_ms: 30_000 },
    });
    expect(flood).toMatchObject({ status: 'failed', verdict: 'output_limit', attempt: 1, stdout: 'flooded\n' });
    expect(flood.error).toMatch(/collection stopped: more than 10000 entries/);
    // The flood may end inside one heartbeat interval (500 ms here): wait, bounded, for the next beat.
    // A runner whose event loop the collection froze would never send it.
    let after = await runner();
    for (let i = 0; i < 100 && Date.parse(after.last_heartbeat_at!) <= Date.parse(before.last_heartbeat_at!); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await runner();
    }
    expect(after.status).toBe('healthy');
    expect(Date.parse(after.last_heartbeat_at!)).toBeGreaterThan(Date.parse(before.last_heartbeat_at!));

    const next = await agentClient.jobs.createAndWait({ language: 'python', code: 'print("still here")' });
    expect(next).toMatchObject({ status: 'succeeded', stdout: 'still here\n', attempt: 1 });
  }, 90_000);
});

/**
 * Issue 7, point 4 (the runner's half): a runner refuses a job its host cannot honour, and never runs
 * more at once than its memory budget holds. A budget of 400 MiB stands in for a small host.
 */
const MiB = 1024 * 1024;

describe.each<DbKind>(['sqlite', 'postgres'])('a runner holds to what its host can honour (%s)', (db) => {
  const kiln = new KilnSystem(db);
  let agentClient: KilnClient;
  let policyId: string;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({
      name: 'small-host',
      capacity: 4,
      env: { KILN_RUNNER_MEMORY_BUDGET_BYTES: String(400 * MiB), KILN_RUNNER_SLOT_MEMORY_BYTES: String(64 * MiB) },
    });
    const t = await kiln.newTenant();
    agentClient = t.agentClient;
    const base = (await t.admin.policies.list()).items.find((p) => p.name === 'default')!;
    const generous = await t.admin.policies.create({
      name: 'generous',
      ruleset: { ...base.ruleset, limits: { ...base.ruleset.limits, memory_bytes: 1024 * MiB, disk_bytes: 1024 * MiB } },
    });
    policyId = generous.id;
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('refuses memory or disk above its budget with system_error naming the limit and the budget', async () => {
    const [memory, disk] = await Promise.all([
      agentClient.jobs.createAndWait({ language: 'python', code: 'print(1)', policy_id: policyId, limits: { memory_bytes: 512 * MiB, disk_bytes: 64 * MiB } }),
      agentClient.jobs.createAndWait({
        language: 'python',
        code: 'print(1)',
        policy_id: policyId,
        limits: { memory_bytes: 64 * MiB, disk_bytes: 512 * MiB },
      }),
    ]);
    expect(memory).toMatchObject({ status: 'failed', verdict: 'system_error', attempt: 1 });
    expect(memory.error).toBe(
      "limits.memory_bytes 512 MiB exceeds this runner's memory budget of 400 MiB (KILN_RUNNER_MEMORY_BUDGET_BYTES)",
    );
    expect(disk).toMatchObject({ status: 'failed', verdict: 'system_error' });
    expect(disk.error).toMatch(/^limits\.disk_bytes 512 MiB exceeds this runner's memory budget of 400 MiB .*tmpfs/);
    const ok = await agentClient.jobs.createAndWait({ language: 'python', code: 'print(2)', policy_id: policyId, limits: { memory_bytes: 384 * MiB, disk_bytes: 64 * MiB } });
    expect(ok).toMatchObject({ status: 'succeeded', stdout: '2\n' });
  }, 60_000);

  it('four slots but memory for two 150 MiB jobs: never more than two run at once, and all four finish', async () => {
    // Each job prints when it ran, measured inside its sandbox; the intervals show the concurrency.
    const code = 'import time\nstart = time.time()\ntime.sleep(1.5)\nprint(start, time.time())';
    const jobs = await Promise.all(
      Array.from({ length: 4 }, () =>
        agentClient.jobs.createAndWait({ language: 'python', code, policy_id: policyId, limits: { memory_bytes: 150 * MiB, disk_bytes: 64 * MiB, wall_time_ms: 10_000 } }),
      ),
    );
    for (const job of jobs) expect(job).toMatchObject({ status: 'succeeded', attempt: 1 });
    const intervals = jobs.map((j) => j.stdout!.trim().split(' ').map(Number) as [number, number]);
    const mostAtOnce = Math.max(...intervals.map(([start]) => intervals.filter(([s, e]) => s <= start && start < e).length));
    expect(mostAtOnce).toBe(2);
  }, 90_000);
});
