#!/usr/bin/env node
// What the parts kiln's design is made of cost on this machine, with nothing of kiln's own: the floor
// under "Node CPU per job" (issue 14). Each is measured as process CPU time (user + system) ÷ operations,
// interleaved in rounds like the jobs benchmark:
// - one HTTP exchange over a kept-alive loopback connection, a small JSON body each way, between two
//   Node processes: node:http on both ends, then a one-route fastify server (what kiln's control plane is
//   built on), the client's and the server's CPU apart;
// - one SQLite write transaction (better-sqlite3, WAL, synchronous=NORMAL: kiln's settings) inserting one
//   row into a table with three indexes, and one primary-key read;
// - the real `kiln up`'s cheapest routes: `GET /healthz` (no database) and `GET /v1/jobs/{id}` (the key
//   and the job read).
//   node bench/jobs/floors.mjs [--requests N] [--rounds R]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startKilnUp } from '../support/kiln-up.mjs';
import { loadAverage, nodeCpuMs } from '../support/proc.mjs';

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    serve: { type: 'string' },
  },
});

const BODY = JSON.stringify({ runner_id: 'run_0123456789abcdef', free_slots: 4, wait_ms: 20000, leases: [{ job_id: 'job_0123456789abcdef', attempt: 1 }] });

// The server side, started as a child process of this script.
if (flags.serve) {
  const answer = (body) => JSON.stringify({ ok: true, echoed: body.length, leases: [] });
  let server;
  if (flags.serve === 'http') {
    server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(answer(JSON.stringify(body)));
      });
    });
  } else {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false });
    app.post('/x', async (req) => JSON.parse(answer(JSON.stringify(req.body))));
    await app.ready();
    server = app.server;
  }
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
} else {
  await main();
}

function startServer(kind) {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [import.meta.filename, '--serve', kind], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.once('data', (d) => ok({ child, port: Number(String(d).trim()) }));
    child.once('error', fail);
  });
}

/** `count` sequential requests over one kept-alive connection; CPU of both ends per request, in µs. */
async function exchanges(port, path, count, headers = {}, method = 'POST') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const once = () =>
    new Promise((ok, fail) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, agent, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
        res.on('data', () => {});
        res.on('end', () => (res.statusCode < 300 ? ok() : fail(new Error(`${path}: ${res.statusCode}`))));
      });
      req.on('error', fail);
      req.end(method === 'POST' ? BODY : undefined);
    });
  for (let i = 0; i < 100; i++) await once();
  return { agent, once };
}

async function measurePair(serverPid, run, count) {
  const client0 = process.cpuUsage();
  const server0 = nodeCpuMs(serverPid);
  for (let i = 0; i < count; i++) await run();
  const client = process.cpuUsage(client0);
  return { clientUs: (client.user + client.system) / count, serverUs: ((nodeCpuMs(serverPid) - server0) * 1000) / count };
}

function sqliteFloor(count) {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-floor-'));
  try {
    const db = new Database(join(dir, 'floor.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('create table t (id text primary key, tenant text not null, status text not null, at text not null, body text not null)');
    db.exec('create index t_by_tenant on t (tenant, status); create index t_by_at on t (at); create index t_by_status on t (status, at)');
    const insert = db.prepare('insert into t values (?, ?, ?, ?, ?)');
    const read = db.prepare('select * from t where id = ?');
    const write = db.transaction((i) => insert.run(`row_${i}`, 'ten_1', 'queued', new Date().toISOString(), BODY));
    for (let i = 0; i < 200; i++) write(`warm${i}`);
    let t = process.cpuUsage();
    for (let i = 0; i < count; i++) write(i);
    let used = process.cpuUsage(t);
    const writeUs = (used.user + used.system) / count;
    t = process.cpuUsage();
    for (let i = 0; i < count; i++) read.get(`row_${i}`);
    used = process.cpuUsage(t);
    db.close();
    return { writeUs, readUs: (used.user + used.system) / count };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(xs) {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

async function main() {
  const count = Number(flags.requests);
  const rounds = Number(flags.rounds);
  console.log(`kiln floors, ${new Date().toISOString()}: ${count} operations per setting, ${rounds} interleaved rounds`);
  console.log(`  load average before ${loadAverage()}`);
  const plain = await startServer('http');
  const framework = await startServer('fastify');
  const up = await startKilnUp();
  const results = new Map();
  const add = (name, value) => results.set(name, [...(results.get(name) ?? []), value]);
  try {
    const plainRun = await exchanges(plain.port, '/x', count);
    const fastifyRun = await exchanges(framework.port, '/x', count);
    const kilnUrl = new URL(up.url);
    const auth = { authorization: `Bearer ${up.tenantKey}` };
    const created = await fetch(`${up.url}/v1/jobs?wait=true`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ language: 'python', code: 'print(1)' }) });
    const jobId = (await created.json()).id;
    const healthRun = await exchanges(Number(kilnUrl.port), '/healthz', count, {}, 'GET');
    const jobRun = await exchanges(Number(kilnUrl.port), `/v1/jobs/${jobId}`, count, auth, 'GET');
    for (let r = 0; r < rounds; r++) {
      const p = await measurePair(plain.child.pid, plainRun.once, count);
      add('HTTP exchange, node:http both ends: server', p.serverUs);
      add('HTTP exchange, node:http both ends: client', p.clientUs);
      const f = await measurePair(framework.child.pid, fastifyRun.once, count);
      add('HTTP exchange, fastify server: server', f.serverUs);
      add('HTTP exchange, fastify server: client', f.clientUs);
      const s = sqliteFloor(count);
      add('SQLite write transaction, one row, three indexes', s.writeUs);
      add('SQLite primary-key read', s.readUs);
      const h = await measurePair(up.pid, healthRun.once, count);
      add('kiln GET /healthz: control plane', h.serverUs);
      const j = await measurePair(up.pid, jobRun.once, count);
      add('kiln GET /v1/jobs/{id}: control plane', j.serverUs);
    }
    plainRun.agent.destroy();
    fastifyRun.agent.destroy();
    healthRun.agent.destroy();
    jobRun.agent.destroy();
  } finally {
    plain.child.kill();
    framework.child.kill();
    await up.stop();
  }
  console.log(`  load average after ${loadAverage()}`);
  console.log('  CPU per operation (median of the rounds; every round in brackets)');
  for (const [name, values] of results) {
    console.log(`  ${String(median(values).toFixed(0)).padStart(6)} µs  ${name}  [${values.map((v) => v.toFixed(0)).join(', ')}]`);
  }
}
