import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// Drives the built CLI (scripts/test.sh builds first) as a user would: a real process, real signals.
const bin = fileURLToPath(new URL('../../bin/kiln.js', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));
const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  // A failed assertion must not leave a server behind.
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

function startCli(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // The last line of the start-up banner: everything before it has arrived.
      const match = /API docs at (http:\/\/\S+)\/docs\n/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`kiln exited early (${code}): ${stderr}`)));
  });
  url.catch(() => undefined); // awaited only by the tests that expect a start
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, url, exited, stderr: () => stderr };
}

describe.skipIf(!built)('kiln server / kiln up', () => {
  it('starts from flags (a flag wins over its KILN_* variable), serves, and stops cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'kiln-cli-'));
    dirs.push(dataDir);
    const cli = startCli(['server', '--port', '0', '--data-dir', dataDir], {
      KILN_PORT: '1',
      KILN_DATA_DIR: '/nonexistent/should-not-be-used',
      KILN_LOG_LEVEL: 'warn',
    });
    const url = await cli.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toMatch(/:1$/);
    expect((await (await fetch(`${url}/readyz`)).json())).toEqual({ ok: true });
    // The generated operator key: printed once, stored 0600 in the data dir, and it works.
    const keyFile = join(dataDir, 'admin.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = /\n {2}(kiln_operator_[0-9a-f]{64})\n/.exec(cli.stderr())?.[1];
    expect(key).toBeDefined();
    const created = await fetch(`${url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'cli' }),
    });
    expect(created.status).toBe(201);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);

    // `kiln up` on the same data dir: the tenant is still there, and the key is not printed again.
    const up = startCli(['up', '--port', '0', '--data-dir', dataDir], { KILN_LOG_LEVEL: 'warn' });
    const upUrl = await up.url;
    expect(up.stderr()).toContain(`operator key is in ${keyFile}`);
    expect(up.stderr()).not.toContain(key!);
    const tenants = await (await fetch(`${upUrl}/v1/tenants`, { headers: { authorization: `Bearer ${key}` } })).json();
    expect(tenants.items.map((t: { name: string }) => t.name)).toEqual(['cli']);
    up.child.kill('SIGTERM');
    expect(await up.exited).toBe(0);
  });

  it('refuses a bad flag with a clear message', async () => {
    const cli = startCli(['server', '--port', 'eighty'], {});
    expect(await cli.exited).not.toBe(0);
    expect(cli.stderr()).toMatch(/port/);
  });
});
