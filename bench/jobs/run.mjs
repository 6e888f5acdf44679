#!/usr/bin/env node
// The jobs benchmark: python hello world through the API with `?wait=true` (one job per request, the
// real `kiln up`: control plane + local runner + sandboxes, SQLite), against the same program run bare
// with `python3`, at the same concurrency, in the same run. Rounds alternate between the two so machine
// noise hits both alike.
//   node bench/jobs/run.mjs [--jobs N] [--concurrency 1,4,8]
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startKilnUp } from '../support/kiln-up.mjs';
import { load } from '../support/load.mjs';

const { values: flags } = parseArgs({
  options: { jobs: { type: 'string', default: '200' }, concurrency: { type: 'string', default: '1,4,8' } },
});
const jobsPerRound = Number(flags.jobs);
const levels = flags.concurrency.split(',').map(Number);
if (!Number.isInteger(jobsPerRound) || jobsPerRound < 1 || levels.some((c) => !Number.isInteger(c) || c < 1)) {
  throw new Error('--jobs wants a positive integer, --concurrency a list such as 1,4,8');
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


async function main() {
  const { url, tenantKey: key, stop } = await startKilnUp({
    args: ['--capacity', String(Math.max(...levels))],
    // KILN_SPAWNER passes through so the fork server can be compared on and off (KILN_SPAWNER=0).
    env: process.env.KILN_SPAWNER ? { KILN_SPAWNER: process.env.KILN_SPAWNER } : {},
  });
  try {
    const api = viaApi(url, key);
    for (let i = 0; i < 20; i++) await api(); // warm up the runtime caches and the JIT
    for (let i = 0; i < 20; i++) await bare();

    const results = [];
    for (const concurrency of levels) {
      const half = Math.ceil(jobsPerRound / 2);
      // Alternate halves: bare, kiln, bare, kiln, so drift in machine load hits both.
      const b1 = await load(bare, half, concurrency);
      const k1 = await load(api, half, concurrency);
      const b2 = await load(bare, jobsPerRound - half, concurrency);
      const k2 = await load(api, jobsPerRound - half, concurrency);
      const bareStats = { ...percentiles([...b1.latencies, ...b2.latencies]), perSecond: (b1.perSecond + b2.perSecond) / 2 };
      const kilnStats = { ...percentiles([...k1.latencies, ...k2.latencies]), perSecond: (k1.perSecond + k2.perSecond) / 2 };
      results.push({ concurrency, bare: bareStats, kiln: kilnStats });
    }
    const when = new Date().toISOString();
    const ms = (v) => `${v.toFixed(1)} ms`.padStart(9);
    const lines = [
      `kiln jobs benchmark, ${when}: python hello world, ${jobsPerRound} jobs per setting`,
      `  ${'in flight'.padEnd(10)}${'what'.padEnd(22)}${'p50'.padStart(9)}${'p95'.padStart(9)}${'jobs/s'.padStart(9)}`,
    ];
    const checks = [];
    for (const r of results) {
      lines.push(`  ${String(r.concurrency).padEnd(10)}${'bare python3'.padEnd(22)}${ms(r.bare.p50)}${ms(r.bare.p95)}${r.bare.perSecond.toFixed(1).padStart(9)}`);
      lines.push(`  ${''.padEnd(10)}${'kiln API, wait=true'.padEnd(22)}${ms(r.kiln.p50)}${ms(r.kiln.p95)}${r.kiln.perSecond.toFixed(1).padStart(9)}`);
      const over = r.kiln.p50 - r.bare.p50;
      const ratio = r.kiln.perSecond / r.bare.perSecond;
      lines.push(`  ${''.padEnd(10)}p50 +${over.toFixed(1)} ms over bare; throughput ${(ratio * 100).toFixed(0)} % of bare`);
      if (r.concurrency === 1) checks.push([`p50 within 6 ms of bare (1 in flight)`, over <= 6, `+${over.toFixed(1)} ms`]);
      if (r.concurrency > 1) checks.push([`throughput >= 80 % of bare (${r.concurrency} in flight)`, ratio >= 0.8, `${(ratio * 100).toFixed(0)} %`]);
    }
    lines.push('', ...checks.map(([what, ok, got]) => `  ${ok ? 'MET ' : 'MISS'} ${what}: ${got}`));
    console.log(lines.join('\n'));
    const out = resolve(import.meta.dirname, '../results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `jobs-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ when, jobsPerRound, results }, null, 2));
  } finally {
    await stop();
  }
}

/** p50 and p95 of a list of milliseconds (nearest rank). */
function percentiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return { n: sorted.length, p50: at(0.5), p95: at(0.95) };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
