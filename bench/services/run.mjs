// Service proxy benchmark (issue 9, point 7): a request through kiln's proxy
// (client → control plane → runner → port relay → sandbox) against a direct request to the same
// server program run on the host, in the same run. Round trip p50/p95 one at a time, then requests/s
// with 16 in flight, for three upstreams: a trivial Node server, a Node server doing real work per
// request, and the README's `python3 -m http.server`.
//   node bench/services/run.mjs [--requests 2000] [--seconds 5] [--concurrency 16] [--access-cache-ms N] [--profile DIR]
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DEFAULT_RULESET } from '@kiln/core';
import { KilnClient } from '@kiln/sdk';
import { startKilnUp } from '../support/kiln-up.mjs';
import { descendantsCpu } from './processes.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg('requests', 2000);
const SECONDS = arg('seconds', 5);
const CONCURRENCY = arg('concurrency', 16);
// `--profile DIR`: the control plane and its runner write V8 CPU profiles (.cpuprofile) into DIR.
const PROFILE_DIR = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;

// `--access-cache-ms 0`: every proxied request is checked against the store (as before the cache).
const ACCESS_CACHE_MS = process.argv.includes('--access-cache-ms') ? arg('access-cache-ms', 1000) : undefined;

// Each upstream runs the same program inside the sandbox and on the host; the port is the last argument.
const TRIVIAL = `require('http').createServer((req, res) => res.end('hello from the service\\n')).listen(Number(process.argv.at(-1)), '127.0.0.1');`;
// An API answer of some weight: 200 rows built, serialised (~11 KB of JSON) and hashed (an ETag) per request.
const WORKING = `const crypto = require('crypto');
require('http').createServer((req, res) => {
  const rows = Array.from({ length: 200 }, (_, i) => ({ id: i, name: 'item-' + i, price: Math.round(i * 107 + Date.now() % 7) / 100, tags: ['a', 'b', String(i % 9)] }));
  const body = JSON.stringify({ path: req.url, rows });
  res.writeHead(200, { 'content-type': 'application/json', etag: crypto.createHash('sha256').update(body).digest('hex') });
  res.end(body);
}).listen(Number(process.argv.at(-1)), '127.0.0.1');`;
const UPSTREAMS = [
  { name: 'node, trivial', file: 'server.js', content: TRIVIAL, command: (port) => ['node', 'server.js', String(port)] },
  { name: 'node, real work', file: 'server.js', content: WORKING, command: (port) => ['node', 'server.js', String(port)] },
  // The README's service: HTTP/1.0, a connection per request, a 4 KiB static file.
  { name: 'python http.server', file: 'index.html', content: `<!doctype html><p>${'kiln '.repeat(800)}</p>\n`, command: (port) => ['python3', '-m', 'http.server', '--bind', '127.0.0.1', String(port)] },
];

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
const descendantsCpuSeconds = (exclude) => [...descendantsCpu(exclude).values()].reduce((sum, p) => sum + p.seconds, 0);

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

const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
// A runtime folder of its own: the relay socket found below is this run's, never another kiln's.
const runtimeDir = mkdtempSync(join(tmpdir(), 'kiln-bench-run-'));
const nodeArgs = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
const cacheEnv = ACCESS_CACHE_MS === undefined ? {} : { KILN_SERVICES_ACCESS_CACHE_MS: String(ACCESS_CACHE_MS) };
const kiln = await startKilnUp({ env: { KILN_RUNTIME_DIR: runtimeDir, ...cacheEnv }, nodeArgs });
let directPid = 0;
let direct;
const hostDir = mkdtempSync(join(tmpdir(), 'kiln-bench-direct-'));
const rows = [];
try {
  const client = new KilnClient({ url: kiln.url, apiKey: kiln.tenantKey });
  const policy = (await client.policies.list()).items.find((p) => p.name === 'default');
  await client.policies.publish(policy.id, { ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true } }, expected_version: policy.version });
  for (const upstream of UPSTREAMS) {
    const directPort = await freePort();
    writeFileSync(join(hostDir, upstream.file), upstream.content);
    const [cmd, ...args] = upstream.command(directPort);
    direct = spawn(cmd === 'node' ? process.execPath : cmd, args, { cwd: hostDir, stdio: 'ignore' });
    directPid = direct.pid;
    const svc = await client.services.create({ files: [{ path: upstream.file, content: upstream.content, encoding: 'utf8' }], command: upstream.command(8000), port: 8000 });
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
    const label = (path) => `${upstream.name}: ${path}`;
    const directResult = await measure(label('direct (same server on the host)'), `http://127.0.0.1:${directPort}/`);
    const found = [directResult];
    if (upstream === UPSTREAMS[0]) {
      // The sandbox's own path, for the breakdown: the runner's relay socket of this service (newest one).
      const relay = execFileSync('find', [runtimeDir, '-name', '8000.sock'], { encoding: 'utf8' }).trim().split('\n')[0];
      if (relay) found.push(await measure(label('relay socket (runner → sandbox, no kiln HTTP hop)'), `unix:${relay}`));
    }
    found.push(await measure(label('proxy, scoped token'), svc.proxy_url, { 'x-kiln-service-token': token.token }));
    found.push(await measure(label('proxy, tenant key'), svc.proxy_url, { authorization: `Bearer ${kiln.tenantKey}` }));
    for (const r of found) rows.push({ ...r, base: directResult });
    await client.services.stop(svc.id);
    direct.kill();
    direct = undefined;
  }
  console.log(`requests: ${REQUESTS} sequential, then ${SECONDS} s with ${CONCURRENCY} in flight (node ${process.version}); access cache: ${ACCESS_CACHE_MS ?? 'default'} ms`);
  console.log(`before: ${uptimeBefore}`);
  console.log(`after:  ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  console.log('| upstream: path | p50 ms | p95 ms | requests/s | added p50 ms | throughput vs direct | CPU ms per request (kiln + sandboxed server) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.p50_ms.toFixed(3)} | ${r.p95_ms.toFixed(3)} | ${Math.round(r.rps)} | ${(r.p50_ms - r.base.p50_ms).toFixed(3)} | ${Math.round((100 * r.rps) / r.base.rps)} % | ${r.cpuMs.toFixed(3)} |`,
    );
  }
} finally {
  direct?.kill();
  agent.destroy();
  await kiln.stop();
  rmSync(runtimeDir, { recursive: true, force: true });
  rmSync(hostDir, { recursive: true, force: true });
}
