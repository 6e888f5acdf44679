// Statistics and the report of the sandbox benchmark (kept apart from run.mjs so both stay short).

/** Median, p90 and friends of a list of milliseconds. */
export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
  const mean = sorted.reduce((s, v) => s + v, 0) / (sorted.length || 1);
  return { n: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), min: sorted[0] ?? NaN, mean };
}

const MiB = 1024 * 1024;
const ms = (v) => `${v.toFixed(2)} ms`;
const mib = (v) => `${(v / MiB).toFixed(2)} MiB`;

/** Targets from ARCHITECTURE.md §11 and the brief. */
export const TARGETS = {
  oneShotOverBareMs: 6,
  warmExecMs: 3,
  coldStartMs: 30,
  idleBytes: 4 * MiB,
};

/** The human report and whether every target was met. */
export function formatReport({ stats, memory, iterations, when }) {
  const { bare, oneShot, warmExec, coldStart, destroy } = stats;
  const overhead = oneShot.p50 - bare.p50;
  const checks = [
    [`one-shot p50 within ${TARGETS.oneShotOverBareMs} ms of bare`, overhead <= TARGETS.oneShotOverBareMs, `+${ms(overhead)}`],
    [`warm exec p50 <= ${TARGETS.warmExecMs} ms`, warmExec.p50 <= TARGETS.warmExecMs, ms(warmExec.p50)],
    [`idle persistent sandbox <= ${mib(TARGETS.idleBytes)}`, memory.idleCgroupBytes <= TARGETS.idleBytes, mib(memory.idleCgroupBytes)],
  ];
  if (coldStart.n) checks.push([`cold start p50 <= ${TARGETS.coldStartMs} ms`, coldStart.p50 <= TARGETS.coldStartMs, ms(coldStart.p50)]);
  const row = (name, s) =>
    `  ${name.padEnd(34)} ${ms(s.p50).padStart(10)} ${ms(s.p90).padStart(10)} ${ms(s.min).padStart(10)}   n=${s.n}`;
  const lines = [
    `kiln sandbox benchmark, ${when}, ${iterations} interleaved rounds`,
    `  ${'what'.padEnd(34)} ${'p50'.padStart(10)} ${'p90'.padStart(10)} ${'min'.padStart(10)}`,
    row('python hello, bare', bare),
    row('python hello, one-shot sandbox', oneShot),
    row('echo hi, warm persistent sandbox', warmExec),
    ...(coldStart.n ? [row('persistent sandbox cold start', coldStart), row('persistent sandbox destroy', destroy)] : []),
    '',
    `  one-shot / bare (p50): ${(oneShot.p50 / bare.p50).toFixed(2)}x, +${ms(overhead)}`,
    `  warm exec / one-shot (p50): ${(warmExec.p50 / oneShot.p50).toFixed(3)}x`,
    `  idle sandbox: cgroup ${mib(memory.idleCgroupBytes)} (after one command ${mib(memory.afterOneCommandCgroupBytes)}),` +
      ` kiln-init RSS ${mib(memory.initRssBytes)}, outer bwrap RSS ${mib(memory.outerBwrapRssBytes)}`,
    '',
    ...checks.map(([what, ok, got]) => `  ${ok ? 'MET ' : 'MISS'} ${what}: ${got}`),
  ];
  return { text: lines.join('\n'), allMet: checks.every(([, ok]) => ok) };
}
