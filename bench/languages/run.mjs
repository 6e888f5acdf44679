#!/usr/bin/env node
// The catalog benchmark (issue 12, point 5): every toolchain the runner detects here runs its sample
// hello world (packages/runner/src/languages/samples.ts: print, echo a stdin line, exit 0) in a fresh
// one-shot sandbox under the default limits, one at a time; compiled languages compile every time, as
// a job does. Prints the median and p90 wall time per toolchain as the README's catalog table.
// Plain ESM over the built dist: `npm run bench:languages` builds first.
//
//   node bench/languages/run.mjs [--iterations N] [--only python,c,...] [--json]
//
// Needs root (cgroups, uid drop), bubblewrap, the native helpers and the catalog (`bash scripts/setup.sh`).
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver, buildOneShotSpec, detectLanguages, SAMPLE_OUTPUT, SAMPLE_STDIN, SAMPLES } from '@kiln/runner';

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '5' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const iterations = Number(flags.iterations);
if (!Number.isInteger(iterations) || iterations < 1) {
  console.error(`--iterations wants a positive integer, got ${JSON.stringify(flags.iterations)}`);
  process.exit(2);
}
const only = flags.only ? new Set(flags.only.split(',')) : undefined;

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

const driver = new BubblewrapDriver();
const rows = [];
try {
  const detected = await detectLanguages(driver);
  for (const toolchain of detected) {
    if (only && !only.has(toolchain.name)) continue;
    const sample = SAMPLES[toolchain.name];
    const spec = buildOneShotSpec(
      { language: toolchain.name, code: sample.hello, args: sample.exit ? [] : ['0'], stdin: sample.stdin ?? SAMPLE_STDIN },
      { ...DEFAULT_LIMITS },
      { collect: [] },
      toolchain.definition,
    );
    const times = [];
    let failure;
    for (let i = 0; i < iterations; i++) {
      const started = performance.now();
      const result = await driver.run(spec);
      times.push(performance.now() - started);
      if (result.verdict !== 'ok' || result.stdout.toString() !== (sample.expected ?? SAMPLE_OUTPUT)) failure = `${result.verdict}: ${result.stderr.toString().slice(0, 200)}`;
    }
    times.sort((a, b) => a - b);
    rows.push({
      language: toolchain.name,
      version: toolchain.version,
      runtime: toolchain.runtime ?? null,
      aliases: toolchain.aliases,
      compiled: toolchain.definition.compiled,
      median_ms: Math.round(percentile(times, 50)),
      p90_ms: Math.round(percentile(times, 90)),
      ...(failure ? { failure } : {}),
    });
    if (!flags.json) process.stderr.write(`${toolchain.name} ${toolchain.version}: ${Math.round(percentile(times, 50))} ms\n`);
  }
} finally {
  await driver.drain();
}

if (flags.json) {
  console.log(JSON.stringify({ iterations, rows }, null, 2));
} else {
  console.log(`| language | version (toolchain) | aliases | hello world, median / p90 (${iterations} runs) |`);
  console.log('|---|---|---|---|');
  for (const r of rows) {
    const version = r.runtime ? `${r.version} (${r.runtime})` : r.version;
    const time = r.failure ? `failed: ${r.failure}` : `${r.median_ms} / ${r.p90_ms} ms${r.compiled ? ' (compile + run)' : ''}`;
    console.log(`| ${r.language} | ${version} | ${r.aliases.join(', ')} | ${time} |`);
  }
}
