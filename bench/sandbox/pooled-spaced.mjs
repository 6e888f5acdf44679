#!/usr/bin/env node
// What a warm-pool sandbox adds over a bare process when the pool's rebuild does not compete with the
// run: `/bin/true` and python hello world, bare and in a pooled sandbox, interleaved, each run `--gap-ms`
// after the last ended (the rebuild of the sandbox just used finishes in the gap). Against the jobs
// benchmark's back-to-back runs, the difference is what the rebuild costs the next job on a small node.
//   node bench/sandbox/pooled-spaced.mjs [--rounds N] [--gap-ms MS]
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver, buildOneShotSpec, PooledDriver } from '@kiln/runner';
import { loadAverage } from '../support/proc.mjs';

const { values: flags } = parseArgs({ options: { rounds: { type: 'string', default: '80' }, 'gap-ms': { type: 'string', default: '30' } } });
const rounds = Number(flags.rounds);
const gapMs = Number(flags['gap-ms']);
if (process.getuid?.() !== 0) throw new Error('run as root (sandboxes need cgroups and the uid pool)');

const bare = (command, args) => () =>
  new Promise((ok, fail) => {
    const child = spawn(command, args, { env: {}, stdio: 'ignore' });
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? ok() : fail(new Error(`${command} exited ${code}`))));
  });

const pooled = new PooledDriver(new BubblewrapDriver({ reapStale: false }), {
  room: () => ({ slots: 2, memoryBytes: 2 * DEFAULT_LIMITS.memory_bytes }),
  perShape: 2,
});
const inPool = (command) => async () => {
  const spec = buildOneShotSpec({ language: 'python', code: 'print("hello")' }, { ...DEFAULT_LIMITS }, { collect: [] });
  const r = await pooled.run(command ? { ...spec, command } : spec);
  if (r.verdict !== 'ok') throw new Error(`pooled run: ${r.verdict} ${r.error ?? ''}`);
};

const cases = {
  'bare /bin/true': bare('/bin/true', []),
  'pooled /bin/true': inPool(['/bin/true']),
  'bare python3': bare('/usr/bin/python3', ['-c', 'print("hello")']),
  'pooled python3': inPool(undefined),
};
const times = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
try {
  for (const run of Object.values(cases)) for (let i = 0; i < 5; i++) await run();
  const before = loadAverage();
  for (let i = 0; i < rounds; i++) {
    for (const [name, run] of Object.entries(cases)) {
      await new Promise((r) => setTimeout(r, gapMs));
      const t = performance.now();
      await run();
      times[name].push(performance.now() - t);
    }
  }
  const p50 = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(`pooled sandbox, spaced ${gapMs} ms, ${rounds} interleaved rounds, ${new Date().toISOString()}`);
  console.log(`  load average before ${before}, after ${loadAverage()}`);
  for (const [name, xs] of Object.entries(times)) console.log(`  ${name.padEnd(18)} p50 ${p50(xs).toFixed(1)} ms`);
  console.log(`  pooled over bare: /bin/true + ${(p50(times['pooled /bin/true']) - p50(times['bare /bin/true'])).toFixed(1)} ms, python + ${(p50(times['pooled python3']) - p50(times['bare python3'])).toFixed(1)} ms`);
} finally {
  await pooled.drain();
}
