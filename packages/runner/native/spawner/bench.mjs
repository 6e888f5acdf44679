#!/usr/bin/env node
// What kiln-spawner saves: one-shot python sandboxes driven from a Node process padded to a runner's size
// (--ballast-mb of touched buffers; `kiln up` shares its process with the control plane), with the spawner
// (KILN_SPAWNER=1) and with child_process.spawn (KILN_SPAWNER=0), alternating so noise hits both alike.
// Reports Node's own CPU time per sandbox (serial runs; process.cpuUsage covers every Node thread, not
// the children) and throughput with --concurrency in flight. Over the built dist: `npm run build` first.
//   node packages/runner/native/spawner/bench.mjs [--runs 60] [--throughput-runs 150] [--concurrency 4] [--ballast-mb 180]
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver } from '@kiln/runner';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '60' },
    'throughput-runs': { type: 'string', default: '150' },
    concurrency: { type: 'string', default: '4' },
    'ballast-mb': { type: 'string', default: '180' },
  },
});
const [runs, tputRuns, concurrency, ballastMb] = ['runs', 'throughput-runs', 'concurrency', 'ballast-mb'].map((k) => {
  const n = Number(flags[k]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${k} wants a non-negative integer`);
  return n;
});

const ballast = [];
for (let i = 0; i < ballastMb; i++) ballast.push(Buffer.alloc(1024 * 1024, i & 0xff));
const driver = new BubblewrapDriver();
const PYTHON = ['/usr/bin/python3', '-c', 'print("hello")'];
const MODES = ['0', '1'];

async function once(mode) {
  process.env.KILN_SPAWNER = mode;
  const r = await driver.run({ command: PYTHON, limits: DEFAULT_LIMITS });
  if (r.verdict !== 'ok' || r.stdout.toString() !== 'hello\n') throw new Error(`run: ${r.verdict} ${r.error ?? ''}`);
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const order = (i) => (i % 2 ? MODES : [...MODES].reverse());

for (const m of MODES) await once(m); // starts the spawner, warms caches
const cpu = { 0: [], 1: [] };
const wall = { 0: [], 1: [] };
for (let i = 0; i < runs; i++) {
  for (const m of order(i)) {
    await driver.drain();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await once(m);
    const c = process.cpuUsage(c0);
    wall[m].push(performance.now() - t0);
    cpu[m].push((c.user + c.system) / 1000);
  }
}

async function throughput(mode) {
  await driver.drain();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < tputRuns) await once(mode);
    }),
  );
  return tputRuns / ((performance.now() - t0) / 1000);
}
const tput = { 0: [], 1: [] };
if (tputRuns > 0 && concurrency > 0) for (let i = 0; i < 3; i++) for (const m of order(i)) tput[m].push(await throughput(m));
await driver.drain();

console.log(`kiln-spawner bench: Node RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
for (const m of MODES) {
  const name = m === '1' ? 'spawner (KILN_SPAWNER=1)' : 'spawn() (KILN_SPAWNER=0)';
  console.log(
    `  ${name.padEnd(26)} Node CPU/run p50 ${median(cpu[m]).toFixed(2)} ms, wall p50 ${median(wall[m]).toFixed(2)} ms (n=${runs})` +
      (tput[m].length ? `; ${concurrency} in flight: ${tput[m].map((x) => x.toFixed(1)).join(' / ')} sandboxes/s` : ''),
  );
}
