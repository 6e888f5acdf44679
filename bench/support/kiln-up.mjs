// One real `kiln up` for a benchmark: a free loopback port, its own data dir, a tenant and its key.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KilnClient } from '@kiln/sdk';

const CLI = resolve(import.meta.dirname, '../../packages/cli/bin/kiln.js');

const freePort = () =>
  new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

/**
 * Starts `kiln up` (extra CLI `args`, extra `env`, `nodeArgs` such as --cpu-prof), waits for its local runner, and makes a tenant.
 * Resolves to `{ url, tenantKey, tenantId, operatorKey, pid, dir, stop }` (`pid`: the `kiln up` process,
 * which is the control plane; its local runner is a child); `stop()` ends it and removes the data dir.
 */
export async function startKilnUp({ args = [], env = {}, nodeArgs = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const up = spawn(process.execPath, [...nodeArgs, CLI, 'up', '--port', String(port), '--data-dir', dir, ...args], {
    env: { PATH: process.env.PATH, KILN_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  up.stderr.on('data', (d) => (log += d));
  const stop = async () => {
    up.kill('SIGTERM');
    if (up.exitCode === null && up.signalCode === null) await new Promise((r) => up.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 600 && !log.includes('local runner ready'); i++) await new Promise((r) => setTimeout(r, 100));
    if (!log.includes('local runner ready')) throw new Error(`kiln up did not start:\n${log}`);
    const operatorKey = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
    const operator = new KilnClient({ url, apiKey: operatorKey });
    const tenant = await operator.tenants.create({ name: 'bench' });
    const { key } = await operator.tenants.createKey(tenant.id);
    return { url, tenantKey: key, tenantId: tenant.id, operatorKey, pid: up.pid, dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
