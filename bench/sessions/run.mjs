#!/usr/bin/env node
// The session benchmark (issue 8, point 9), on the real `kiln up` (control plane + local runner +
// bubblewrap sandboxes, SQLite), beside a one-shot job and a bare process, in one run:
//   - session create → ready for its first command (the 201), p50 and p95, and the first step after it
//   - a step's round trip through the API for `echo hi`, p50 and p95
//   - 1 MiB and 100 MiB file write and read through the API (MiB/s), the control plane's RSS growth
//   - idle session memory on the runner (its sandboxes' cgroups and processes, per session)
//   - 100 live sessions on this machine, each running a step
// and, to say where the time goes, the same operations straight on a persistent sandbox in this
// process (no HTTP, no control plane, no runner agent).
//   node bench/sessions/run.mjs [--iterations N] [--live N]       (root: cgroups and the uid pool)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS, DEFAULT_RULESET } from '@kiln/core';
import { BubblewrapDriver } from '@kiln/runner';
import { startKilnUp } from '../support/kiln-up.mjs';

const { values: flags } = parseArgs({ options: { iterations: { type: 'string', default: '100' }, live: { type: 'string', default: '100' } } });
const iterations = Number(flags.iterations);
const liveCount = Number(flags.live);
if (!Number.isInteger(iterations) || iterations < 5 || !Number.isInteger(liveCount) || liveCount < 1 || liveCount > 500) {
  throw new Error('--iterations wants an integer >= 5, --live 1..500');
}
if (process.getuid?.() !== 0) throw new Error('run as root (cgroups and the uid pool need it)');

const MiB = 1024 * 1024;
const TARGETS = { readyMs: 30, stepMs: 5, filesMiBps: 200, cpRssGrowthBytes: 32 * MiB, idleBytes: 4 * MiB };
/** Sessions for the live count: small sandboxes, so 100 fit this machine's memory budget. */
const SESSION_MEMORY_BYTES = 64 * MiB;

/** p50, p95 and p99 of a list of milliseconds (nearest rank). */
function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

const timed = async (fn) => {
  const t0 = performance.now();
  const value = await fn();
  return [performance.now() - t0, value];
};

function rssBytes(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) * 1024;
}

/** Every process below `pid` (its children, theirs, …). */
function descendants(pid) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch {
      // gone
    }
  }
  const out = [];
  const queue = [pid];
  while (queue.length) for (const c of children.get(queue.shift()) ?? []) out.push(c), queue.push(c);
  return out;
}

/**
 * What the runner's sandboxes hold: the memory cgroups its descendants are in (v1 usage_in_bytes or v2
 * memory.current, kernel memory of kiln-init, the tmpfs workspace and page cache included) plus the
 * proportional set size of processes outside them (the outer bwrap). Only this kiln's processes: other
 * kilns on the machine have cgroups under the same parent.
 */
function runnerSandboxBytes(runnerPid) {
  const cgroups = new Set();
  let outside = 0;
  for (const pid of descendants(runnerPid)) {
    try {
      const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
      const v1 = lines.find((l) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:/.test(l));
      const path = v1 ? `/sys/fs/cgroup/memory${v1.split(':')[2]}/memory.usage_in_bytes` : `/sys/fs/cgroup${lines.find((l) => l.startsWith('0::')).slice(3)}/memory.current`;
      if (path.includes('/kiln/')) cgroups.add(path);
      else {
        const pss = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n').find((l) => l.startsWith('Pss:'));
        outside += Number(pss.split(/\s+/)[1]) * 1024;
      }
    } catch {
      // gone
    }
  }
  let inside = 0;
  for (const path of cgroups) inside += Number(readFileSync(path, 'utf8').trim());
  return { bytes: inside + outside, cgroups: cgroups.size };
}

function bareEcho() {
  return new Promise((ok, fail) => {
    const child = spawn('/bin/echo', ['hi'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', () => (out === 'hi\n' ? ok() : fail(new Error(`bare echo printed ${out}`))));
  });
}

async function main() {
  const kiln = await startKilnUp({ args: ['--capacity', String(Math.max(2, Math.ceil((liveCount + 20) / 16)))] });
  const { url, tenantKey, operatorKey, tenantId, pid: cpPid } = kiln;
  const results = {};
  try {
    const runnerPid = descendants(cpPid).find((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('runner'));
    const headers = { authorization: `Bearer ${tenantKey}` };
    const call = async (method, path, body) => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    // Room for the benchmark: many sessions and requests for this one tenant.
    await fetch(`${url}/v1/tenants/${tenantId}/quota`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${operatorKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sessions: { max_active: liveCount + 50 }, rate_limit: { requests_per_second: 100_000, burst: 1_000_000 } }),
    }).then((r) => r.ok || Promise.reject(new Error(`quota: ${r.status}`)));
    const policy = await call('POST', '/v1/policies', {
      name: 'bench-sessions',
      ruleset: {
        ...DEFAULT_RULESET,
        limits: { ...DEFAULT_RULESET.limits, memory_bytes: SESSION_MEMORY_BYTES, disk_bytes: 256 * MiB },
        sessions: { ...DEFAULT_RULESET.sessions, max_active: liveCount + 50 },
      },
    });
    const createSession = () => call('POST', '/v1/sessions', { policy_id: policy.id });
    const step = (id, command) => call('POST', `/v1/sessions/${id}/steps`, { command });

    // Warm up every path once.
    const warm = await createSession();
    await step(warm.id, ['echo', 'hi']);
    await call('POST', '/v1/jobs?wait=true', { language: 'python', code: 'print("hi")' });
    for (let i = 0; i < 10; i++) await bareEcho();
    // …the file path too: the first transfers size the control plane's heap once (reported apart).
    const rssBeforeFirstFiles = rssBytes(cpPid);
    for (let i = 0; i < 3; i++) {
      await fetch(`${url}/v1/sessions/${warm.id}/files?path=warm.bin`, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: randomBytes(8 * MiB) });
      await (await fetch(`${url}/v1/sessions/${warm.id}/files?path=warm.bin`, { headers })).arrayBuffer();
    }
    results.firstFilesRssGrowthBytes = rssBytes(cpPid) - rssBeforeFirstFiles;
    await call('DELETE', `/v1/sessions/${warm.id}`);

    // 1. Create → ready (201), then its first step.
    const ready = [];
    const firstStep = [];
    for (let i = 0; i < Math.min(iterations, 50); i++) {
      const [ms, s] = await timed(createSession);
      ready.push(ms);
      firstStep.push((await timed(() => step(s.id, ['echo', 'hi'])))[0]);
      await call('DELETE', `/v1/sessions/${s.id}`);
    }
    results.ready = summarize(ready);
    results.firstStep = summarize(firstStep);

    // 2. Step round trip beside a one-shot job and a bare process, interleaved.
    const session = await createSession();
    const steps = [];
    const jobs = [];
    const bare = [];
    for (let i = 0; i < iterations; i++) {
      const [ms, s] = await timed(() => step(session.id, ['echo', 'hi']));
      if (s.stdout !== 'hi\n') throw new Error(`step printed ${JSON.stringify(s.stdout)}`);
      steps.push(ms);
      if (i % 4 === 0) jobs.push((await timed(() => call('POST', '/v1/jobs?wait=true', { language: 'python', code: 'print("hi")' })))[0]);
      bare.push((await timed(bareEcho))[0]);
    }
    results.step = summarize(steps);
    results.oneShotJob = summarize(jobs);
    results.bare = summarize(bare);

    // 3. Files through the API, and the control plane's RSS while they stream.
    const files = {};
    for (const [label, size, rounds] of [['1MiB', MiB, 20], ['100MiB', 100 * MiB, 3]]) {
      const data = randomBytes(size);
      let peak = 0;
      const baseline = rssBytes(cpPid);
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(cpPid))), 5);
      const writes = [];
      const reads = [];
      for (let r = 0; r < rounds; r++) {
        writes.push((await timed(() => fetch(`${url}/v1/sessions/${session.id}/files?path=blob.bin`, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: data }).then((res) => res.ok || Promise.reject(new Error(`PUT ${res.status}`)))))[0]);
        reads.push((await timed(async () => {
          const res = await fetch(`${url}/v1/sessions/${session.id}/files?path=blob.bin`, { headers });
          let n = 0;
          for await (const chunk of res.body) n += chunk.length;
          if (n !== size) throw new Error(`read ${n} of ${size} bytes`);
        }))[0]);
      }
      clearInterval(sampler);
      const mibps = (ms) => size / MiB / (ms / 1000);
      files[label] = {
        writeMiBps: mibps(summarize(writes).p50),
        readMiBps: mibps(summarize(reads).p50),
        cpRssGrowthBytes: Math.max(0, Math.max(peak, rssBytes(cpPid)) - baseline),
      };
    }
    results.files = files;
    await call('DELETE', `/v1/sessions/${session.id}`);

    // 4. Idle memory per session on the runner: N sessions that ran one step, then nothing.
    await new Promise((r) => setTimeout(r, 500));
    const before = runnerSandboxBytes(runnerPid);
    const runnerRssBefore = rssBytes(runnerPid);
    const idle = [];
    for (let i = 0; i < 10; i++) {
      const s = await createSession();
      await step(s.id, ['true']);
      idle.push(s);
    }
    await new Promise((r) => setTimeout(r, 500));
    const after = runnerSandboxBytes(runnerPid);
    results.idle = {
      perSessionBytes: (after.bytes - before.bytes) / idle.length,
      runnerRssPerSessionBytes: (rssBytes(runnerPid) - runnerRssBefore) / idle.length,
      cgroups: after.cgroups - before.cgroups,
    };
    for (const s of idle) await call('DELETE', `/v1/sessions/${s.id}`);

    // 5. Live sessions: created four at a time, each runs a step while all are alive.
    const cpRssBeforeLive = rssBytes(cpPid);
    const [createMs, live] = await timed(async () => {
      const out = [];
      for (let i = 0; i < liveCount; i += 4) out.push(...(await Promise.all(Array.from({ length: Math.min(4, liveCount - i) }, createSession))));
      return out;
    });
    const [stepAllMs, answered] = await timed(() => Promise.all(live.map((s) => step(s.id, ['echo', 'alive']).then((r) => r.stdout === 'alive\n'))));
    results.live = {
      sessions: live.length,
      answered: answered.filter(Boolean).length,
      createAllMs: createMs,
      stepAllMs,
      runnerSandboxBytes: runnerSandboxBytes(runnerPid).bytes,
      cpRssGrowthBytes: rssBytes(cpPid) - cpRssBeforeLive,
    };
    for (let i = 0; i < live.length; i += 8) await Promise.all(live.slice(i, i + 8).map((s) => call('DELETE', `/v1/sessions/${s.id}`)));
  } finally {
    await kiln.stop();
  }

  // Where the time goes: the same on a persistent sandbox in this process, without the API.
  const driver = new BubblewrapDriver();
  const direct = { start: [], exec: [] };
  try {
    for (let i = 0; i < Math.min(iterations, 30); i++) {
      const [ms, sbx] = await timed(() => driver.start({ limits: { ...DEFAULT_LIMITS, memory_bytes: SESSION_MEMORY_BYTES } }));
      direct.start.push(ms);
      if (i === 0) for (let j = 0; j < iterations; j++) direct.exec.push((await timed(() => sbx.exec(['echo', 'hi'])))[0]);
      await sbx.destroy();
    }
  } finally {
    await driver.drain();
  }
  results.direct = { start: summarize(direct.start), exec: summarize(direct.exec) };
  report(results);
}

function report(r) {
  const when = new Date().toISOString();
  const ms = (v) => `${v.toFixed(1)} ms`;
  const mib = (v) => `${(v / MiB).toFixed(2)} MiB`;
  const pp = (s) => `p50 ${ms(s.p50)}  p95 ${ms(s.p95)}  (n=${s.n})`;
  const checks = [
    [`create → ready p50 <= ${TARGETS.readyMs} ms`, r.ready.p50 <= TARGETS.readyMs, ms(r.ready.p50)],
    [`step round trip p50 <= ${TARGETS.stepMs} ms`, r.step.p50 <= TARGETS.stepMs, ms(r.step.p50)],
    ...Object.entries(r.files).flatMap(([label, f]) => [
      [`${label} write >= ${TARGETS.filesMiBps} MiB/s`, f.writeMiBps >= TARGETS.filesMiBps, `${f.writeMiBps.toFixed(0)} MiB/s`],
      [`${label} read >= ${TARGETS.filesMiBps} MiB/s`, f.readMiBps >= TARGETS.filesMiBps, `${f.readMiBps.toFixed(0)} MiB/s`],
      [`${label} control-plane RSS growth < ${mib(TARGETS.cpRssGrowthBytes)}`, f.cpRssGrowthBytes < TARGETS.cpRssGrowthBytes, mib(f.cpRssGrowthBytes)],
    ]),
    [`idle session <= ${mib(TARGETS.idleBytes)}`, r.idle.perSessionBytes <= TARGETS.idleBytes, mib(r.idle.perSessionBytes)],
    [`${r.live.sessions} live sessions all answer`, r.live.answered === r.live.sessions, `${r.live.answered}/${r.live.sessions}`],
  ];
  const lines = [
    `kiln session benchmark, ${when}, load average ${loadavg().map((v) => v.toFixed(2)).join(' ')}`,
    `  create → ready (201):        ${pp(r.ready)}  p99 ${ms(r.ready.p99)}`,
    `  first step after create:     ${pp(r.firstStep)}`,
    `  step round trip (echo hi):   ${pp(r.step)}  p99 ${ms(r.step.p99)}`,
    `  one-shot job (python, wait): ${pp(r.oneShotJob)}`,
    `  bare /bin/echo:              ${pp(r.bare)}`,
    `  files, first transfers (warm-up, 3 × 8 MiB each way): control-plane RSS +${mib(r.firstFilesRssGrowthBytes)} once`,
    ...Object.entries(r.files).map(([label, f]) => `  files ${label.padEnd(6)}: write ${f.writeMiBps.toFixed(0)} MiB/s, read ${f.readMiBps.toFixed(0)} MiB/s, control-plane RSS +${mib(f.cpRssGrowthBytes)}`),
    `  idle session on the runner:  ${mib(r.idle.perSessionBytes)} (sandbox cgroups and processes), runner agent +${mib(r.idle.runnerRssPerSessionBytes)}`,
    `  live sessions: ${r.live.answered}/${r.live.sessions} answered a step; created in ${ms(r.live.createAllMs)}, all stepped in ${ms(r.live.stepAllMs)}; sandboxes ${mib(r.live.runnerSandboxBytes)}, control plane +${mib(r.live.cpRssGrowthBytes)}`,
    `  where the time goes (same machine, in-process, no API): persistent sandbox start ${pp(r.direct.start)}; exec echo ${pp(r.direct.exec)}`,
    `    → control plane + runner agent + HTTP add ${ms(r.ready.p50 - r.direct.start.p50)} to a create and ${ms(r.step.p50 - r.direct.exec.p50)} to a step (p50)`,
    ...checks.map(([what, ok, value]) => `  ${ok ? 'MET ' : 'MISS'} ${what}: ${value}`),
  ];
  console.log(lines.join('\n'));
  const out = resolve(import.meta.dirname, '../results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `sessions-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ when, results: r }, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
