import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AbortError, ConnectionError, KilnClient, TimeoutError } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, freePort, KilnSystem } from './support/kiln-system.js';

/**
 * The `kiln` commands that cover the API, and the SDK's handle, timeout, abort and connection errors,
 * against a real control plane and runner.
 */

const CLI = resolve(import.meta.dirname, '../../packages/cli/bin/kiln.js');

describe('the CLI covers the API; the SDK behaves like the ones users know', () => {
  const kiln = new KilnSystem('sqlite');
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cli-'));
  let tenantId: string;
  let tenantKey: string;
  let agentKey: string;
  let agentClient: KilnClient;

  const cli = (args: string[], key: string, input?: string) =>
    spawnSync(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_URL: kiln.url, KILN_API_KEY: key },
      encoding: 'utf8',
      timeout: 60_000,
      ...(input !== undefined ? { input } : {}),
    });
  const json = (args: string[], key: string) => {
    const r = cli([...args, '--json'], key);
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const tenant = json(['tenants', 'create', 'cli-co'], kiln.adminKey);
    tenantId = tenant.id;
    tenantKey = json(['tenants', 'create-key', tenantId], kiln.adminKey).key;
    const agent = json(['agents', 'create', 'bot', '--type', 'assistant'], tenantKey);
    agentKey = json(['agents', 'create-key', agent.id], tenantKey).key;
    agentClient = kiln.client(agentKey);
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('tenants, agents and policies: list, get, publish from a file, refuse a stale version', () => {
    expect(json(['tenants', 'list'], kiln.adminKey).items.map((t: { id: string }) => t.id)).toContain(tenantId);
    expect(cli(['tenants', 'get', tenantId], kiln.adminKey).stdout).toMatch(/^name: +cli-co$/m);
    expect(json(['agents', 'list'], tenantKey).items).toHaveLength(1);
    const policies = json(['policies', 'list'], tenantKey).items;
    const policy = policies.find((p: { name: string }) => p.name === 'default');
    const current = json(['policies', 'get', policy.id], tenantKey);
    writeFileSync(join(dir, 'ruleset.json'), JSON.stringify({ ...current, ruleset: { ...current.ruleset, limits: { ...current.ruleset.limits, pids: 32 } } }));
    const published = json(['policies', 'publish', policy.id, '--file', 'ruleset.json'], tenantKey);
    expect(published).toMatchObject({ version: 2, ruleset: { limits: { pids: 32 } } });
    const stale = cli(['policies', 'publish', policy.id, '--file', 'ruleset.json', '--expected-version', '1'], tenantKey);
    expect(stale.status).toBe(125);
    expect(stale.stderr).toMatch(/^kiln: CONFLICT: /);
    expect(json(['policies', 'versions', policy.id], tenantKey).items).toHaveLength(2);
  });

  it('a run above the policy names the field and what to do; audit verify passes', () => {
    writeFileSync(join(dir, 'p.py'), 'print(1)\n');
    const refused = cli(['run', 'p.py', '--pids', '64'], agentKey);
    expect(refused.status).toBe(125);
    expect(refused.stderr).toMatch(/^kiln: POLICY_VIOLATION: .*.*ceiling 32\): ask within the policy/);
    expect(cli(['audit', 'verify'], tenantKey).stdout).toMatch(/^ok: \d+ events/);
    expect(json(['audit', 'list', '--limit', '5'], tenantKey).items.length).toBeGreaterThan(0);
  });

  it('jobs: get, logs of an ended job, logs -f of a running one, cancel; artifacts: list and get', async () => {
    writeFileSync(join(dir, 'out.py'), 'import os\nos.makedirs("out", exist_ok=True)\nopen("out/a.txt", "w").write("A")\nprint("done")\n');
    const job = json(['run', 'out.py'], agentKey);
    expect(job.verdict).toBe('ok');
    expect(cli(['jobs', 'get', job.id], agentKey).stdout).toMatch(/^verdict: +ok$/m);
    expect(cli(['jobs', 'logs', job.id], agentKey).stdout).toBe('done\n');
    const arts = json(['artifacts', 'list', '--job', job.id], agentKey).items;
    const a = arts.find((x: { name: string }) => x.name === 'out/a.txt');
    expect(cli(['artifacts', 'get', a.id], agentKey).stdout).toBe('A');
    cli(['artifacts', 'get', a.id, '-o', 'a.txt'], agentKey);
    expect(readFileSync(join(dir, 'a.txt'), 'utf8')).toBe('A');

    writeFileSync(join(dir, 'tick.py'), 'import time\nfor i in range(3):\n    print("tick", i, flush=True)\n    time.sleep(0.2)\n');
    const running = json(['run', 'tick.py', '--detach'], agentKey);
    const followed = cli(['jobs', 'logs', '-f', running.id], agentKey);
    expect(followed.stdout).toBe('tick 0\ntick 1\ntick 2\n');

    writeFileSync(join(dir, 'sleep.py'), 'import time\ntime.sleep(60)\n');
    const sleeper = json(['run', 'sleep.py', '--detach'], agentKey);
    expect(json(['jobs', 'cancel', sleeper.id], agentKey).status).toBe('canceled');
    expect(json(['jobs', 'list', '--status', 'canceled'], agentKey).items.map((j: { id: string }) => j.id)).toContain(sleeper.id);
  });

  it('kiln run --timeout cancels the job and exits 124', async () => {
    writeFileSync(join(dir, 'forever.py'), 'import time\ntime.sleep(60)\n');
    const r = cli(['run', 'forever.py', '--timeout', '1s'], agentKey);
    expect(r.status).toBe(124);
    const id = /job (job_\w+) did not end within --timeout 1s; it was canceled/.exec(r.stderr)?.[1];
    expect(id, r.stderr).toBeDefined();
    await eventually('the job to be canceled', async () => (await agentClient.jobs.get(id!)).status === 'canceled');
  });

  it('keys list shows ids and no secret; revoke refuses the key from then on', () => {
    // A key of its own to revoke: the other tests go on using agentKey.
    const spareAgent = json(['agents', 'create', 'spare', '--type', 'assistant'], tenantKey);
    const spare = json(['agents', 'create-key', spareAgent.id], tenantKey);
    const listed = cli(['keys', 'list', '--json'], tenantKey);
    expect(listed.status).toBe(0);
    expect(listed.stdout).not.toContain(agentKey.slice(-20));
    expect(listed.stdout).not.toContain(spare.key.slice(-20));
    expect(JSON.parse(listed.stdout).items.map((k: { id: string }) => k.id)).toContain(spare.id);
    expect(json(['keys', 'revoke', spare.id], tenantKey).revoked_at).not.toBeNull();
    expect(cli(['languages'], spare.key).status).toBe(122);
  });

  it('SDK: a handle with id, wait and cancel; timeouts that detach or cancel; abort; connection errors', async () => {
    const handle = await agentClient.jobs.start({ language: 'python', code: 'import time; time.sleep(60)' });
    expect(handle.id).toMatch(/^job_/);
    await handle.cancel();
    expect((await handle.wait()).status).toBe('canceled');

    const detached = await agentClient.jobs.run({ language: 'python', code: 'import time; time.sleep(3); print("late")' }, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(detached).toBeInstanceOf(TimeoutError);
    expect((detached as TimeoutError).jobCanceled).toBe(false);
    expect((detached as TimeoutError).message).toMatch(/goes on running/);
    const finished = await agentClient.jobs.wait((detached as TimeoutError).jobId!, { timeoutMs: 30_000 });
    expect(finished).toMatchObject({ verdict: 'ok', stdout: 'late\n' });

    const canceled = await agentClient.jobs.run({ language: 'python', code: 'import time; time.sleep(60)' }, { timeoutMs: 300, onTimeout: 'cancel' }).catch((e: unknown) => e);
    expect((canceled as TimeoutError).jobCanceled).toBe(true);
    await eventually('the timed-out job to be canceled', async () => (await agentClient.jobs.get((canceled as TimeoutError).jobId!)).status === 'canceled');

    const controller = new AbortController();
    let submitted = '';
    const aborted = agentClient.jobs.run({ language: 'python', code: 'import time; time.sleep(60)' }, {
      signal: controller.signal,
      onJob: (job) => {
        submitted = job.id;
        setTimeout(() => controller.abort(), 100);
      },
    }).catch((e: unknown) => e);
    const abortError = await aborted;
    expect(abortError).toBeInstanceOf(AbortError);
    expect((abortError as AbortError).jobId).toBe(submitted);
    await eventually('the aborted job to be canceled', async () => (await agentClient.jobs.get(submitted)).status === 'canceled');

    const port = await freePort();
    const err = await new KilnClient({ url: `http://127.0.0.1:${port}`, apiKey: 'k' }).jobs.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).message).toBe(`cannot reach http://127.0.0.1:${port} (connection refused)`);
    expect((err as ConnectionError).url).toBe(`http://127.0.0.1:${port}`);
  }, 90_000);
});
