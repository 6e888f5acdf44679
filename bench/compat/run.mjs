#!/usr/bin/env node
// The compatibility-layer benchmark: python hello world through Piston's `POST /api/v2/execute` and
// Judge0's `POST /judge0/submissions?wait=true`, against kiln's own `POST /v1/jobs?wait=true`, on the
// same `kiln up`, at the same concurrency, in the same run. Rounds alternate so machine noise hits all
// alike. Target: the compat layer adds under 1 ms at p50 (issue 12, point 5).
//   node bench/compat/run.mjs [--jobs N] [--concurrency 1,4]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { summarize } from '../sandbox/stats.mjs';
import { startKilnUp } from '../support/kiln-up.mjs';
import { load } from '../support/load.mjs';

const { values: flags } = parseArgs({
  options: { jobs: { type: 'string', default: '150' }, concurrency: { type: 'string', default: '1,4' } },
});
const jobsPerRound = Number(flags.jobs);
const levels = flags.concurrency.split(',').map(Number);
if (!Number.isInteger(jobsPerRound) || jobsPerRound < 3 || levels.some((c) => !Number.isInteger(c) || c < 1)) {
  throw new Error('--jobs wants an integer of at least 3, --concurrency a list such as 1,4');
}
const CODE = 'print("hello")';

const post = async (url, key, body, check) => {
  const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await res.json();
  if (!check(answer)) throw new Error(`unexpected answer from ${url}: ${JSON.stringify(answer)}`);
};

const ways = (url, key) => ({
  'kiln /v1/jobs?wait=true': () => post(`${url}/v1/jobs?wait=true`, key, { language: 'python', code: CODE }, (j) => j.stdout === 'hello\n'),
  'Piston /api/v2/execute': () =>
    post(`${url}/api/v2/execute`, key, { language: 'python', version: '*', files: [{ content: CODE }] }, (p) => p.run?.stdout === 'hello\n'),
  'Judge0 ?wait=true': () =>
    post(`${url}/judge0/submissions?wait=true`, key, { language_id: 71, source_code: CODE }, (s) => s.stdout === 'hello\n' && s.status?.id === 3),
});


const get = async (url, headers, check) => {
  const res = await fetch(url, { headers });
  const answer = await res.json();
  if (!check(res.status, answer)) throw new Error(`unexpected answer from ${url}: ${res.status}`);
};

/**
 * The layer alone, without a sandbox in the way: the same control-plane work through each face (the
 * fleet's languages; a request refused at the policy check), sequential, many times. What a job adds
 * (about a sandbox run) is the same for every face, and on a shared machine its noise hides a
 * millisecond; these pairs show what the translation itself costs.
 */
const layerPairs = (url, key) => ({
  'languages: /v1/languages': () => get(`${url}/v1/languages`, { authorization: `Bearer ${key}` }, (st) => st === 200),
  'languages: Piston /runtimes': () => get(`${url}/api/v2/runtimes`, { authorization: key }, (st) => st === 200),
  'refusal: /v1/jobs 422': () =>
    post(`${url}/v1/jobs`, key, { language: 'python', code: CODE, limits: { wall_time_ms: 86_000_000 } }, (a) => a.code !== undefined),
  'refusal: Piston execute 400': () =>
    post(`${url}/api/v2/execute`, key, { language: 'python', version: '*', files: [{ content: CODE }], run_timeout: 3_600_000 }, (a) => typeof a.message === 'string'),
});

async function main() {
  const { url, tenantKey: key, stop } = await startKilnUp({ args: ['--capacity', String(Math.max(...levels))] });
  try {
    const all = ways(url, key);
    for (const fn of Object.values(all)) for (let i = 0; i < 15; i++) await fn(); // warm up
    const results = [];
    for (const concurrency of levels) {
      const parts = 3;
      const per = Math.ceil(jobsPerRound / parts);
      const acc = Object.fromEntries(Object.keys(all).map((k) => [k, { latencies: [], seconds: 0, n: 0 }]));
      for (let part = 0; part < parts; part++) {
        for (const [name, fn] of Object.entries(all)) {
          const r = await load(fn, per, concurrency);
          acc[name].latencies.push(...r.latencies);
          acc[name].seconds += r.seconds;
          acc[name].n += per;
        }
      }
      results.push({
        concurrency,
        ways: Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, { ...summarize(v.latencies), perSecond: v.n / v.seconds }])),
      });
    }
    const layer = {};
    for (const [name, fn] of Object.entries(layerPairs(url, key))) {
      for (let i = 0; i < 50; i++) await fn();
      layer[name] = summarize((await load(fn, 500, 1)).latencies);
    }
    const when = new Date().toISOString();
    const lines = [`kiln compat benchmark, ${when}: python hello world, ${jobsPerRound} requests per way and setting`];
    lines.push(`  ${'in flight'.padEnd(10)}${'way'.padEnd(26)}${'p50'.padStart(11)}${'p90'.padStart(11)}${'req/s'.padStart(9)}`);
    const checks = [];
    for (const r of results) {
      const base = r.ways['kiln /v1/jobs?wait=true'];
      for (const [name, s] of Object.entries(r.ways)) {
        const delta = name === 'kiln /v1/jobs?wait=true' ? '' : `  (${s.p50 - base.p50 >= 0 ? '+' : ''}${(s.p50 - base.p50).toFixed(2)} ms, ${((s.perSecond / base.perSecond) * 100).toFixed(0)} %)`;
        lines.push(`  ${String(r.concurrency).padEnd(10)}${name.padEnd(26)}${`${s.p50.toFixed(2)} ms`.padStart(11)}${`${s.p90.toFixed(2)} ms`.padStart(11)}${s.perSecond.toFixed(1).padStart(9)}${delta}`);
      }
      const piston = r.ways['Piston /api/v2/execute'];
      checks.push([`Piston adds < 1 ms at p50, whole job (${r.concurrency} in flight; machine noise included)`, piston.p50 - base.p50 < 1, `${(piston.p50 - base.p50).toFixed(2)} ms`]);
    }
    lines.push('', '  the layer alone (control plane only, sequential, 500 requests each)');
    for (const [name, st] of Object.entries(layer)) lines.push(`  ${name.padEnd(36)}${`${st.p50.toFixed(2)} ms`.padStart(11)}${`${st.p90.toFixed(2)} ms`.padStart(11)}`);
    const langDelta = layer['languages: Piston /runtimes'].p50 - layer['languages: /v1/languages'].p50;
    const refusalDelta = layer['refusal: Piston execute 400'].p50 - layer['refusal: /v1/jobs 422'].p50;
    checks.push([`Piston's translation adds < 1 ms at p50 (runtimes vs languages)`, langDelta < 1, `${langDelta.toFixed(2)} ms`]);
    checks.push([`Piston's translation adds < 1 ms at p50 (execute refused vs job refused)`, refusalDelta < 1, `${refusalDelta.toFixed(2)} ms`]);
    lines.push('', ...checks.map(([what, ok, got]) => `  ${ok ? 'MET ' : 'MISS'} ${what}: ${got}`));
    console.log(lines.join('\n'));
    const out = resolve(import.meta.dirname, '../results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `compat-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ when, jobsPerRound, results, layer }, null, 2));
  } finally {
    await stop();
  }
}

await main();
