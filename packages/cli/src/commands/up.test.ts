import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// `kiln up` as a user runs it: the built CLI, a real local runner process, a real job.
const bin = fileURLToPath(new URL('../../bin/kiln.js', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));
const dataDir = mkdtempSync(join(tmpdir(), 'kiln-up-'));
let up: ChildProcess | undefined;
afterAll(() => {
  if (up && up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** The pid of the process whose command line names this argument, if any. */
function pidWithArg(arg: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(arg)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');

describe.skipIf(!built)('kiln up', () => {
  it('runs a job on its local runner, keeps control-plane secrets from it, and takes it down when killed', async () => {
    const adminKey = 'kiln_operator_up_test_key_0123456789abcdef';
    up = spawn(process.execPath, [bin, 'up', '--port', '0', '--data-dir', dataDir], {
      env: { PATH: process.env.PATH ?? '', KILN_ADMIN_KEY: adminKey, KILN_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      up!.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const ready = /local runner ready/.test(stderr) && /listening on (http:\/\/\S+)/.exec(stderr);
        if (ready) resolve(ready[1]!);
      });
      up!.once('exit', (code) => reject(new Error(`kiln up exited (${code}): ${stderr}`)));
    });

    const runnerPid = pidWithArg(join(dataDir, 'runner'));
    expect(runnerPid).toBeDefined();
    const environ = readFileSync(`/proc/${runnerPid}/environ`, 'utf8').split('\0');
    expect(environ.some((v) => v.startsWith('KILN_RUNNER_TOKEN='))).toBe(true);
    expect(environ.some((v) => v.startsWith('KILN_ADMIN_KEY='))).toBe(false);
    expect(readFileSync(`/proc/${runnerPid}/cmdline`, 'utf8')).not.toContain('kiln_runner_');

    const headers = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });
    const tenant = await (await fetch(`${url}/v1/tenants`, { method: 'POST', headers: headers(adminKey), body: '{"name":"up"}' })).json();
    const { key } = await (await fetch(`${url}/v1/tenants/${tenant.id}/keys`, { method: 'POST', headers: headers(adminKey), body: '{}' })).json();
    const job = await (
      await fetch(`${url}/v1/jobs?wait=true`, { method: 'POST', headers: headers(key), body: JSON.stringify({ language: 'python', code: 'print("up")' }) })
    ).json();
    expect(job).toMatchObject({ status: 'succeeded', stdout: 'up\n' });
    // The local runner's own credential, kept for its restarts where only its user can read it.
    expect(statSync(join(dataDir, 'runner')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'runner', 'credential')).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);

    up.kill('SIGKILL');
    for (let i = 0; i < 100 && alive(runnerPid!); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(runnerPid!)).toBe(false);
  }, 60_000);
});
