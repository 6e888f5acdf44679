#!/usr/bin/env node
// The jobs benchmark: python hello world four ways in one run, interleaved in rounds so machine noise
// hits all alike — bare `python3`; a one-shot sandbox (`kiln exec`'s path: BubblewrapDriver.run, no
// control plane); a sandbox from the warm pool (the runner's path, no control plane); and a job through
// the API with `?wait=true` (the real `kiln up`: control plane + local runner, SQLite). Concurrency 1, 4,
// 8 by default; p50, p95, throughput, the ratios, and the Node CPU per job of the control plane and the
// runner (their processes' CPU time over the API rounds ÷ jobs). Optionally the 10,000-queued-jobs drain.
//   node bench/jobs/run.mjs [--jobs N] [--rounds R] [--concurrency 1,4,8] [--capacity C] [--drain N] [--profile DIR]
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver, buildOneShotSpec, PooledDriver } from '@kiln/runner';
import { startKilnUp } from '../support/kiln-up.mjs';
import { loadAverage, nodeCpuMs } from '../support/proc.mjs';
import { drainQueue } from './drain.mjs';
import { load } from '../support/load.mjs';

const { values: flags } = parseArgs({
  options: {
    jobs: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '1,4,8' },
    capacity: { type: 'string' },
    drain: { type: 'string', default: '0' },
    profile: { type: 'string' },
  },
});
const jobsPerSetting = Number(flags.jobs);
const rounds = Number(flags.rounds);
const levels = flags.concurrency.split(',').map(Number);
const drainJobs = Number(flags.drain);
if (![jobsPerSetting, rounds].every((n) => Number.isInteger(n) && n >= 1) || levels.some((c) => !Number.isInteger(c) || c < 1)) {
  throw new Error('--jobs and --rounds want positive integers, --concurrency a list such as 1,4,8');
}
const CODE = 'print("hello")';

function bare() {
  return new Promise((ok, fail) => {
    const child = spawn('/usr/bin/python3', ['-c', CODE], { env: {}, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', fail);
    child.on('close', () => (out === 'hello\n' ? ok() : fail(new Error(`bare python printed ${out}`))));
  });
}

/** The sandbox without the control plane, through a driver (fresh one-shot, or the warm pool). */
function inSandbox(driver) {
  return async () => {
    const r = await driver.run(buildOneShotSpec({ language: 'python', code: CODE }, { ...DEFAULT_LIMITS }, { collect: [] }));
    if (r.verdict !== 'ok' || r.stdout.toString() !== 'hello\n') throw new Error(`sandbox run: ${r.verdict} ${r.error ?? ''}`);
  };
}

function viaApi(url, key) {
  return async () => {
    const res = await fetch(`${url}/v1/jobs?wait=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ language: 'python', code: CODE }),
    });
    const job = await res.json();
    if (job.stdout !== 'hello\n' || job.status !== 'succeeded') throw new Error(`job failed: ${JSON.stringify(job)}`);
  };
}

/** p50 and p95 of a list of milliseconds (nearest rank). */
function percentiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return { n: sorted.length, p50: at(0.5), p95: at(0.95) };
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root (the in-process sandboxes need cgroups and the uid pool)');
  const capacity = flags.capacity ? Number(flags.capacity) : undefined;
  const env = {};
  if (process.env.KILN_SPAWNER) env.KILN_SPAWNER = process.env.KILN_SPAWNER;
  if (process.env.KILN_RUNNER_POOL_SIZE) env.KILN_RUNNER_POOL_SIZE = process.env.KILN_RUNNER_POOL_SIZE;
  // The drain queues more than the default quota lets one tenant queue, faster than a key's default rate.
  if (drainJobs > 0) {
    env.KILN_QUOTA_MAX_QUEUED_JOBS = String(Math.max(1000, drainJobs + 100));
    env.KILN_QUOTA_RATE_PER_SECOND = '100000';
    env.KILN_QUOTA_RATE_BURST = '100000';
  }
  const nodeArgs = flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${resolve(flags.profile)}`] : [];
  const up = await startKilnUp({ args: capacity ? ['--capacity', String(capacity)] : [], env, nodeArgs });
  const oneShotDriver = new BubblewrapDriver({ reapStale: false });
  const maxLevel = Math.max(...levels);
  const pooledDriver = new PooledDriver(new BubblewrapDriver({ reapStale: false }), {
    room: () => ({ slots: maxLevel, memoryBytes: maxLevel * DEFAULT_LIMITS.memory_bytes }),
    perShape: maxLevel,
  });
  const modes = {
    bare,
    oneShot: inSandbox(oneShotDriver),
    pooled: inSandbox(pooledDriver),
    api: viaApi(up.url, up.tenantKey),
  };
  const loadBefore = loadAverage();
  try {
    for (let i = 0; i < 20; i++) for (const fn of Object.values(modes)) await fn(); // warm caches and the JIT

    const results = [];
    for (const concurrency of levels) {
      const samples = Object.fromEntries(Object.keys(modes).map((m) => [m, { latencies: [], seconds: 0 }]));
      let apiCpuMs = 0;
      for (let r = 0; r < rounds; r++) {
        const count = Math.ceil(jobsPerSetting / rounds);
        for (const [name, fn] of Object.entries(modes)) {
          const cpuBefore = name === 'api' ? nodeCpuMs(up.pid) : 0;
          const { latencies, seconds } = await load(fn, count, concurrency);
          if (name === 'api') apiCpuMs += nodeCpuMs(up.pid) - cpuBefore;
          samples[name].latencies.push(...latencies);
          samples[name].seconds += seconds;
        }
      }
      const stats = Object.fromEntries(
        Object.entries(samples).map(([m, s]) => [m, { ...percentiles(s.latencies), perSecond: s.latencies.length / s.seconds }]),
      );
      results.push({ concurrency, ...stats, nodeCpuMsPerJob: apiCpuMs / samples.api.latencies.length });
    }
    const drain = drainJobs > 0 ? await drainQueue(up, drainJobs) : undefined;
    const when = new Date().toISOString();
    report({ when, results, drain, loadBefore, loadAfter: loadAverage(), capacity: capacity ?? 'default' });
    const out = resolve(import.meta.dirname, '../results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `jobs-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ when, jobsPerSetting, rounds, results, drain }, null, 2));
  } finally {
    await pooledDriver.drain().catch(() => {});
    await oneShotDriver.drain().catch(() => {});
    await up.stop();
  }
}

function report({ when, results, drain, loadBefore, loadAfter, capacity }) {
  const ms = (v) => `${v.toFixed(1)} ms`.padStart(9);
  const names = { bare: 'bare python3', oneShot: 'one-shot sandbox', pooled: 'warm-pool sandbox', api: 'job via API, wait' };
  const lines = [
    `kiln jobs benchmark, ${when}: python hello world, ${jobsPerSetting} per setting in ${rounds} interleaved rounds, kiln up capacity ${capacity}`,
    `  load average before ${loadBefore}, after ${loadAfter} (the machine is shared: compare within this run)`,
    `  ${'in flight'.padEnd(10)}${'what'.padEnd(20)}${'p50'.padStart(9)}${'p95'.padStart(9)}${'per s'.padStart(8)}${'× bare'.padStart(8)}`,
  ];
  const checks = [];
  for (const r of results) {
    for (const m of Object.keys(names)) {
      const s = r[m];
      lines.push(`  ${(m === 'bare' ? String(r.concurrency) : '').padEnd(10)}${names[m].padEnd(20)}${ms(s.p50)}${ms(s.p95)}${s.perSecond.toFixed(1).padStart(8)}${(s.perSecond / r.bare.perSecond).toFixed(2).padStart(8)}`);
    }
    const overBare = r.api.p50 - r.bare.p50;
    const planeOverSandbox = r.api.p50 - r.pooled.p50;
    const sandboxOverBare = r.pooled.p50 - r.bare.p50;
    lines.push(
      `  ${''.padEnd(10)}API p50 = bare + ${overBare.toFixed(1)} ms; control plane + runner add ${planeOverSandbox.toFixed(1)} ms over the pooled sandbox ` +
        `(${(r.api.p50 - r.oneShot.p50).toFixed(1)} ms over one-shot); pooled sandbox = bare + ${sandboxOverBare.toFixed(1)} ms ` +
        `(one-shot: + ${(r.oneShot.p50 - r.bare.p50).toFixed(1)}); Node CPU ${r.nodeCpuMsPerJob.toFixed(1)} ms per job`,
    );
    const ratio = r.api.perSecond / r.bare.perSecond;
    const ofSandbox = r.api.perSecond / r.oneShot.perSecond;
    if (r.concurrency === 1) {
      checks.push([`job p50 <= bare + 5 ms`, overBare <= 5, `+${overBare.toFixed(1)} ms`]);
      checks.push([`control plane + runner <= 2 ms over a sandbox run (pooled)`, planeOverSandbox <= 2, `${planeOverSandbox.toFixed(1)} ms`]);
      checks.push([`sandbox <= bare + 3 ms (pooled)`, sandboxOverBare <= 3, `+${sandboxOverBare.toFixed(1)} ms`]);
    } else {
      checks.push([`throughput >= 0.60 × bare (${r.concurrency} in flight)`, ratio >= 0.6, `${ratio.toFixed(2)} ×`]);
      checks.push([`throughput >= 90 % of one-shot sandbox runs (${r.concurrency} in flight)`, ofSandbox >= 0.9, `${(ofSandbox * 100).toFixed(0)} %`]);
    }
    checks.push([`Node CPU per job <= 3 ms (${r.concurrency} in flight)`, r.nodeCpuMsPerJob <= 3, `${r.nodeCpuMsPerJob.toFixed(1)} ms`]);
  }
  if (drain) {
    lines.push(
      '',
      `  drain: ${drain.jobs} jobs queued in ${drain.submitSeconds.toFixed(1)} s, drained in ${drain.drainSeconds.toFixed(1)} s ` +
        `(${drain.perSecond.toFixed(1)} jobs/s); control-plane RSS ${mib(drain.rssStart)} → max ${mib(drain.rssMax)} → end ${mib(drain.rssEnd)}`,
    );
  }
  lines.push('', ...checks.map(([what, ok, got]) => `  ${ok ? 'MET ' : 'MISS'} ${what}: ${got}`));
  console.log(lines.join('\n'));
}

const mib = (b) => `${(b / 1024 / 1024).toFixed(0)} MiB`;

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
