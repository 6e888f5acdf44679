#!/usr/bin/env node
// Summarises V8 .cpuprofile files (node --cpu-prof): busy time by package/area and the top functions by
// self time, so a flame graph's shape fits in the README.
//   node bench/support/profile-summary.mjs FILE.cpuprofile [...] [--top N]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });

/** Which part of the system a frame belongs to, from its script URL. */
function area(url, name) {
  if (!url) return name === '(garbage collector)' ? 'GC' : name === '(program)' ? 'native/program' : 'native';
  const m = /packages\/(\w+)\/(?:dist|src)\/([\w-]+)/.exec(url);
  if (m) return `kiln ${m[1]}/${m[2]}`;
  const dep = /node_modules\/((?:@[\w.-]+\/)?[\w.-]+)/.exec(url);
  if (dep) return dep[1];
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
  return url;
}

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const gaps = profile.timeDeltas;
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (gaps[i] ?? 0)));
  const areas = new Map();
  const fns = new Map();
  let busy = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    busy += us;
    const a = area(url, functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = `${functionName || '(anonymous)'} ${a}:${lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const top = Number(values.top);
  const pct = (us) => `${((100 * us) / busy).toFixed(1)} %`.padStart(7);
  console.log(`${file}: busy ${(busy / 1000).toFixed(0)} ms`);
  console.log('  by area:');
  for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`  ${pct(us)}  ${a}`);
  console.log('  top functions (self):');
  for (const [f, us] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`  ${pct(us)}  ${f}`);
}
