#!/usr/bin/env node
// The sandbox benchmark (ARCHITECTURE.md §11): python hello world bare and in a one-shot sandbox,
// `echo hi` through a warm persistent sandbox, cold start of a persistent sandbox, and the idle memory
// of one. Rounds are interleaved (bare, one-shot, warm, bare, ...) so machine noise hits all alike;
// compare ratios taken in one run. Plain ESM over the built dist: `npm run bench:sandbox` builds first.
//
//   node bench/sandbox/run.mjs [--iterations N] [--warmup N] [--cold N] [--json]
//
// Needs root (cgroups, uid drop), bubblewrap and the native helpers (`bash scripts/setup.sh`).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver } from '@kiln/runner';
import { formatReport, summarize } from './stats.mjs';

const { values: flags } = parseArgs({
  options: {
    iterations: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '10' },
    cold: { type: 'string', default: '30' },
    json: { type: 'boolean', default: false },
  },
});
const iterations = positiveInt(flags.iterations, '--iterations');
const warmup = positiveInt(flags.warmup, '--warmup', true);
const coldStarts = positiveInt(flags.cold, '--cold', true);

const PYTHON = ['/usr/bin/python3', '-c', 'print("hello")'];
const limits = { ...DEFAULT_LIMITS };

function positiveInt(text, name, zeroOk = false) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1)) {
    console.error(`${name} wants a ${zeroOk ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
}

/** Bare: the same process spawned from Node with an empty environment, no sandbox. */
function runBare() {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON[0], PYTHON.slice(1), { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 && out === 'hello\n' ? resolve() : reject(new Error(`bare run: ${code} ${out}`))));
  });
}

async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root (cgroups and the uid pool need it)');
  const driver = new BubblewrapDriver();
  const oneShot = async () => {
    const r = await driver.run({ command: PYTHON, limits });
    if (r.verdict !== 'ok' || r.stdout.toString() !== 'hello\n') {
      throw new Error(`one-shot run: ${r.verdict} ${r.error ?? ''} ${r.stderr.toString()}`);
    }
  };
  const warm = await driver.start({ limits });
  const warmExec = async () => {
    const r = await warm.exec('echo hi');
    if (r.verdict !== 'ok' || r.stdout.toString() !== 'hi\n') throw new Error(`warm exec: ${r.verdict}`);
  };

  const samples = { bare: [], oneShot: [], warmExec: [], coldStart: [], destroy: [] };
  for (let i = 0; i < warmup; i++) {
    await runBare();
    await oneShot();
    await warmExec();
  }
  for (let i = 0; i < iterations; i++) {
    samples.bare.push(await timed(runBare));
    samples.oneShot.push(await timed(oneShot));
    samples.warmExec.push(await timed(warmExec));
  }
  await warm.destroy();

  // Cold start: start() until the init answers, then the first command; destroy timed apart.
  for (let i = 0; i < coldStarts; i++) {
    let sbx;
    samples.coldStart.push(await timed(async () => (sbx = await driver.start({ limits }))));
    samples.destroy.push(await timed(() => sbx.destroy()));
  }

  // Idle footprint: a fresh sandbox that has done nothing, then the same after one command.
  const idle = await driver.start({ limits });
  await new Promise((r) => setTimeout(r, 500));
  const initPid = idle.initHostPid();
  const memory = {
    idleCgroupBytes: idle.memoryUsageBytes(),
    initRssBytes: initPid ? rssBytes(initPid) : NaN,
    outerBwrapRssBytes: rssBytes(idle.pids().find((p) => p !== initPid) ?? initPid),
  };
  await idle.exec('echo hi');
  await new Promise((r) => setTimeout(r, 200));
  memory.afterOneCommandCgroupBytes = idle.memoryUsageBytes();
  await idle.destroy();
  await driver.drain();

  const result = {
    when: new Date().toISOString(),
    iterations,
    stats: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)])),
    memory,
  };
  const report = formatReport(result);
  mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`../results/sandbox-${result.when.replace(/[:.]/g, '-')}.json`, import.meta.url), JSON.stringify(result, null, 2));
  console.log(flags.json ? JSON.stringify(result, null, 2) : report.text);
  process.exitCode = report.allMet ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
