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
    const after = await runner();
    expect(after.status).toBe('healthy');
    expect(Date.parse(after.last_heartbeat_at!)).toBeGreaterThan(Date.parse(before.last_heartbeat_at!));

    const next = await agentClient.jobs.createAndWait({ language: 'python', code: 'print("still here")' });
    expect(next).toMatchObject({ status: 'succeeded', stdout: 'still here\n', attempt: 1 });
  }, 90_000);
});
