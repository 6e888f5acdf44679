// Service proxy benchmark (issue 9, point 7): a request through kiln's proxy
// (client → control plane → runner → port relay → sandbox) against a direct request to the same
// server program run on the host. Round trip p50/p95 one at a time, then requests/s with 16 in flight.
//   node bench/services/run.mjs [--requests 2000] [--seconds 5] [--concurrency 16]
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DEFAULT_RULESET } from '@kiln/core';
import { KilnClient } from '@kiln/sdk';
import { startKilnUp } from '../support/kiln-up.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg('requests', 2000);
const SECONDS = arg('seconds', 5);
const CONCURRENCY = arg('concurrency', 16);
// `--profile DIR`: the control plane and its runner write V8 CPU profiles (.cpuprofile) into DIR.
const PROFILE_DIR = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;

// The same server inside the sandbox and on the host: HTTP/1.1 keep-alive, a small answer.
const SERVER = `require('http').createServer((req, res) => res.end('hello from the service\\n')).listen(Number(process.argv.at(-1)), '127.0.0.1');`;

const freePort = () =>
  new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
function get(url, headers) {
  return new Promise((resolve, reject) => {
    // `unix:/path.sock` reaches a Unix socket (the service's port relay on the runner).
    const where = url.startsWith('unix:') ? { socketPath: url.slice(5), path: '/' } : { ...Object.fromEntries(['hostname', 'port', 'pathname'].map((k) => [k, new URL(url)[k]])) };
    const req = http.get({ host: where.hostname, port: where.port, path: where.pathname ?? where.path, socketPath: where.socketPath, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${url}: ${res.statusCode}`))));
    });
    req.on('error', reject);
  });
}

/** CPU seconds used so far by this process's descendants but `exclude` (kiln up, its runner, the sandbox). */
function descendantsCpuSeconds(exclude) {
  const tick = 100; // USER_HZ
  let total = 0;
  const walk = (pid) => {
    let children = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return;
    }
    for (const child of children) {
      if (child === exclude) continue;
      try {
        const fields = readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ');
        total += (Number(fields[11]) + Number(fields[12])) / tick;
      } catch {
        // gone
      }
      walk(child);
    }
  };
  walk(process.pid);
  return total;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function measure(name, url, headers = {}) {
  for (let i = 0; i < 200; i++) await get(url, headers); // warm-up: connections, JIT, caches
  const times = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    await get(url, headers);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  let done = 0;
  const cpuBefore = descendantsCpuSeconds(directPid);
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        await get(url, headers);
        done++;
      }
    }),
  );
  const cpuMs = ((descendantsCpuSeconds(directPid) - cpuBefore) * 1000) / done;
  return { name, p50_ms: percentile(times, 50), p95_ms: percentile(times, 95), rps: done / SECONDS, cpuMs };
}

const loadBefore = loadavg().map((l) => l.toFixed(1)).join(' ');
// A runtime folder of its own: the relay socket found below is this run's, never another kiln's.
const runtimeDir = mkdtempSync(join(tmpdir(), 'kiln-bench-run-'));
const nodeArgs = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
const kiln = await startKilnUp({ env: { KILN_RUNTIME_DIR: runtimeDir }, nodeArgs });
let directPid = 0;
const direct = spawn(process.execPath, ['-e', SERVER, String(await freePort())], { stdio: 'ignore' });
try {
  const directPort = direct.spawnargs.at(-1);
  directPid = direct.pid;
  const client = new KilnClient({ url: kiln.url, apiKey: kiln.tenantKey });
  const policy = (await client.policies.list()).items.find((p) => p.name === 'default');
  await client.policies.publish(policy.id, { ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true } }, expected_version: policy.version });
  const svc = await client.services.create({ files: [{ path: 'server.js', content: SERVER, encoding: 'utf8' }], command: ['node', 'server.js', '8000'], port: 8000 });
  for (let i = 0; i < 300 && (await client.services.get(svc.id)).status === 'starting'; i++) await new Promise((r) => setTimeout(r, 100));
  const token = await client.services.createToken(svc.id, { ttl_seconds: 3600 });
  for (let i = 0; i < 50; i++) {
    try {
      await get(`http://127.0.0.1:${directPort}/`, {});
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const directResult = await measure('direct (same server on the host)', `http://127.0.0.1:${directPort}/`);
  // The sandbox's own path, for the breakdown: the runner's relay socket of this service (newest one).
  const relay = execFileSync('find', [runtimeDir, '-name', '8000.sock'], { encoding: 'utf8' }).trim().split('\n')[0];
  const relayResult = relay ? await measure('relay socket (runner → sandbox, no kiln HTTP hop)', `unix:${relay}`) : undefined;
  const keyResult = await measure('proxy, tenant key', svc.proxy_url, { authorization: `Bearer ${kiln.tenantKey}` });
  const tokenResult = await measure('proxy, scoped token', svc.proxy_url, { 'x-kiln-service-token': token.token });
  const rows = [directResult, ...(relayResult ? [relayResult] : []), tokenResult, keyResult];
  console.log(`requests: ${REQUESTS} sequential, then ${SECONDS} s with ${CONCURRENCY} in flight (node ${process.version})`);
  console.log(`load average before: ${loadBefore}`);
  console.log('| path | p50 ms | p95 ms | requests/s | added p50 ms | throughput vs direct | kiln CPU ms per request |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.p50_ms.toFixed(3)} | ${r.p95_ms.toFixed(3)} | ${Math.round(r.rps)} | ${(r.p50_ms - directResult.p50_ms).toFixed(3)} | ${Math.round((100 * r.rps) / directResult.rps)} % | ${r.cpuMs.toFixed(3)} |`,
    );
  }
  await client.services.stop(svc.id);
} finally {
  direct.kill();
  agent.destroy();
  await kiln.stop();
  rmSync(runtimeDir, { recursive: true, force: true });
}
