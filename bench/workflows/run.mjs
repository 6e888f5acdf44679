#!/usr/bin/env node
// The workflow benchmark: a 10-step sequential workflow of python hello steps against the same 10 jobs
// submitted one after another by a client (`?wait=true`, each after the previous ended), on the real
// `kiln up` (control plane + local runner + sandboxes, SQLite), in the same run, rounds alternating.
// The engine's added time per step is (workflow's time − the 10 jobs' time) / 10, per round; p50 over rounds.
//   node bench/workflows/run.mjs [--rounds N] [--steps N]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { KilnClient } from '@kiln/sdk';
import { startKilnUp } from '../support/kiln-up.mjs';

const { values: flags } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, steps: { type: 'string', default: '10' } } });
const rounds = Number(flags.rounds);
const steps = Number(flags.steps);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(steps) || steps < 1 || steps > 64) {
  throw new Error('--rounds wants a positive integer, --steps 1..64');
}
const CODE = 'print("hello")';

/** Per step: from one job's end to the next job's start (its lease), from the jobs' own timestamps. */
const handoffs = (jobs) => jobs.slice(1).map((job, i) => Date.parse(job.started_at) - Date.parse(jobs[i].completed_at));

async function jobsOneAfterAnother(url, key, gaps) {
  const t = performance.now();
  const jobs = [];
  for (let i = 0; i < steps; i++) {
    const res = await fetch(`${url}/v1/jobs?wait=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ language: 'python', code: CODE }),
    });
    const job = await res.json();
    if (job.status !== 'succeeded') throw new Error(`job failed: ${JSON.stringify(job)}`);
    jobs.push(job);
  }
  const ms = performance.now() - t;
  gaps?.push(...handoffs(jobs));
  return ms;
}

async function workflow(client, gaps) {
  const t = performance.now();
  const done = await client.workflows.run({
    steps: Array.from({ length: steps }, (_, i) => ({ name: `s${i + 1}`, language: 'python', code: CODE })),
  });
  if (done.status !== 'succeeded') throw new Error(`workflow failed: ${JSON.stringify(done)}`);
  const ms = performance.now() - t;
  if (gaps) {
    const jobs = await Promise.all(done.steps.map((s) => client.jobs.get(s.job_id)));
    gaps.push(...handoffs(jobs));
  }
  return ms;
}

async function main() {
  const { url, tenantKey: key, stop } = await startKilnUp();
  try {
    const client = new KilnClient({ url, apiKey: key });
    await jobsOneAfterAnother(url, key); // warm up
    await workflow(client);
    const perStep = [];
    const rows = [];
    const clientGaps = [];
    const engineGaps = [];
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so drift in machine load hits both alike.
      const [jobsMs, workflowMs] = r % 2 === 0
        ? [await jobsOneAfterAnother(url, key, clientGaps), await workflow(client, engineGaps)]
        : [...[await workflow(client, engineGaps), await jobsOneAfterAnother(url, key, clientGaps)].reverse()];
      perStep.push((workflowMs - jobsMs) / steps);
      rows.push({ jobsMs, workflowMs });
    }
    const sorted = [...perStep].sort((a, b) => a - b);
    const p50 = sorted[Math.ceil(0.5 * sorted.length) - 1];
    const when = new Date().toISOString();
    const load = loadavg().map((v) => v.toFixed(2)).join(' ');
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.ceil(0.5 * xs.length) - 1];
    console.log(
      [
        `kiln workflow benchmark, ${when}: ${steps} sequential python hello steps, ${rounds} rounds, load average ${load}`,
        `  ${steps} jobs one after another (client, wait=true): p50 ${median(rows.map((r) => r.jobsMs)).toFixed(1)} ms`,
        `  one ${steps}-step workflow (submit to end event):    p50 ${median(rows.map((r) => r.workflowMs)).toFixed(1)} ms`,
        `  engine's added time per step: p50 ${p50.toFixed(2)} ms (negative: faster than the client loop)`,
        `  hand-off, one job's end to the next one's start: workflow p50 ${median(engineGaps)} ms, client p50 ${median(clientGaps)} ms`,
        `  ${p50 <= 5 ? 'MET ' : 'MISS'} added time per step <= 5 ms p50`,
      ].join('\n'),
    );
    const out = resolve(import.meta.dirname, '../results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `workflows-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ when, steps, rounds, load, rows, perStep, engineGaps, clientGaps }, null, 2));
  } finally {
    await stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
