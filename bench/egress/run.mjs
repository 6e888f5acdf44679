#!/usr/bin/env node
// The egress benchmark (issue 9, point 7): download throughput from a test host through the whole
// egress path (curl in a one-shot sandbox → relay → the runner's proxy → the host) against curl on the
// runner host connecting directly to the same host, one stream and 4 in flight. Target: ≥ 70 % of
// direct. The host lives in a network namespace (test/support/egress), named by a test resolver: no
// outside network. Rounds are interleaved (direct, proxied, ...) so machine noise hits both alike.
//
//   node bench/egress/run.mjs [--mib N] [--rounds N] [--rate-mbit N] [--json]
//
// Without --rate-mbit the host is memory-fast and the run is CPU-bound on both sides (every hop of the
// proxied path copies the bytes again); with it, the host sits behind a link of that rate.
//
// Needs root (ip netns, cgroups), bubblewrap, the native helpers and a build (`npm run build`).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { DEFAULT_LIMITS } from '@kiln/core';
import { BubblewrapDriver, EgressProxy, egressConfigFromEnv } from '@kiln/runner';

const { values: flags } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '5' },
    // A remote host is behind a link, not memory: --rate-mbit shapes the test host's link (tc tbf).
    'rate-mbit': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const bytes = Number(flags.mib) * 1024 * 1024;
const rounds = Number(flags.rounds);
if (!(bytes > 0) || !(rounds > 0)) throw new Error('--mib and --rounds want positive numbers');

// The test helpers are TypeScript (the tests use them through vitest): compile them once for plain node.
const root = fileURLToPath(new URL('../..', import.meta.url));
const outdir = `${root}bench/results/egress-support`;
mkdirSync(outdir, { recursive: true });
await build({ entryPoints: [`${root}test/support/egress/test-hosts.ts`, `${root}test/support/egress/test-dns.ts`], outdir, format: 'esm', platform: 'node', outExtension: { '.js': '.mjs' }, logLevel: 'error' });
copyFileSync(`${root}test/support/egress/host-server.mjs`, `${outdir}/host-server.mjs`);
const { startTestHosts } = await import(`${outdir}/test-hosts.mjs`);
const { startTestDns } = await import(`${outdir}/test-dns.mjs`);

const rateMbit = flags['rate-mbit'] === undefined ? undefined : Number(flags['rate-mbit']);
const hosts = await startTestHosts(['bench.egress.test'], rateMbit ? { rateMbit } : {});
const dns = await startTestDns({ 'bench.egress.test': [hosts.address] });
const proxy = new EgressProxy(egressConfigFromEnv({ KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr, KILN_EGRESS_RESOLVER: dns.server, KILN_EGRESS_MAX_BYTES: String(2 ** 40) }));
const driver = new BubblewrapDriver({ egress: proxy });

// The egress machinery without a sandbox around it: the relay (kiln-exec --egress-relay) on the host's
// loopback, the proxy and its pump, so curl on the host compares with curl on the host, with no
// sandbox CPU quota in the way (a sandbox's curl and relay share one CPU).
const RELAY_PORT = 39_000 + (process.pid % 1000);
const hostGate = await proxy.open({ sandbox_id: `sbx_bench${process.pid}`, allow: ['bench.egress.test:80'], uid: 0, gid: 0 });
const relayLauncher = spawn(`${root}packages/runner/native/build/kiln-exec`, ['--egress-relay', String(RELAY_PORT), `${hostGate.hostDir}/proxy.sock`, '3'], {
  stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
});
relayLauncher.stdio[3].end('sleep\0' + '3600\0');
await new Promise((r) => setTimeout(r, 300));
/** The detached relay's pid (its command line names our socket), to end it by pid. */
const relayPids = readdirSync('/proc')
  .filter((p) => /^\d+$/.test(p))
  .filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${hostGate.hostDir}/proxy.sock`);
    } catch {
      return false;
    }
  })
  .map(Number);
const limits = { ...DEFAULT_LIMITS, wall_time_ms: 300_000, cpu_time_ms: 300_000, memory_bytes: 256 * 1024 * 1024 };

/** A shell line that runs `streams` curls at once, each printing its bytes/s on a line. */
function curls(url, streams, extra = '') {
  const one = `curl -sS -o /dev/null ${extra} -w '%{speed_download}\\n' '${url}'`;
  return `${Array.from({ length: streams }, () => `${one} &`).join(' ')} wait`;
}

const sum = (text) => text.trim().split('\n').map(Number).reduce((a, b) => a + b, 0);

function runOnHost(script) {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.on('exit', (code) => (code === 0 ? resolve(sum(out)) : reject(new Error(`curl on the host failed (${code})`))));
  });
}

async function runInSandbox(script) {
  const result = await driver.run({
    command: ['/bin/sh', '-c', script],
    limits,
    network: { egress: 'allowlist', allow: ['bench.egress.test:80'] },
  });
  if (result.verdict !== 'ok') throw new Error(`sandbox run failed (${result.verdict}): ${result.stderr.toString()}`);
  return sum(result.stdout.toString());
}

const cases = [];
for (const streams of [1, 4]) {
  const per = Math.floor(bytes / streams);
  const direct = `http://${hosts.address}/bytes?n=${per}`;
  const named = `http://bench.egress.test/bytes?n=${per}`;
  const row = { streams, direct: [], relayed: [], forward: [], tunnel: [] };
  for (let r = 0; r < rounds; r++) {
    row.direct.push(await runOnHost(curls(direct, streams)));
    row.relayed.push(await runOnHost(`export http_proxy=http://127.0.0.1:${RELAY_PORT}; ${curls(named, streams, '--proxytunnel')}`));
    // Plain HTTP through HTTP_PROXY (the proxy forwards the request), and the same through CONNECT.
    row.forward.push(await runInSandbox(curls(named, streams)));
    row.tunnel.push(await runInSandbox(curls(named, streams, '--proxytunnel')));
  }
  cases.push(row);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mibs = (bps) => (bps / 1024 / 1024).toFixed(0);
const report = cases.map((c) => ({
  streams: c.streams,
  direct_mib_s: Number(mibs(median(c.direct))),
  relay_proxy_connect_mib_s: Number(mibs(median(c.relayed))),
  relay_proxy_ratio: Number((median(c.relayed) / median(c.direct)).toFixed(3)),
  proxied_http_mib_s: Number(mibs(median(c.forward))),
  proxied_connect_mib_s: Number(mibs(median(c.tunnel))),
  http_ratio: Number((median(c.forward) / median(c.direct)).toFixed(3)),
  connect_ratio: Number((median(c.tunnel) / median(c.direct)).toFixed(3)),
}));
for (const pid of relayPids) process.kill(pid, 'SIGKILL');
relayLauncher.kill('SIGKILL');
await proxy.closeAll();
hosts.stop();
await dns.stop();
await driver.drain().catch(() => {});

mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(`${root}bench/results/egress${rateMbit ? `-${rateMbit}mbit` : ''}.json`, JSON.stringify({ bytes, rounds, rate_mbit: rateMbit ?? null, report }, null, 2));
if (flags.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`egress throughput, ${flags.mib} MiB per round, median of ${rounds}, ${rateMbit ? `host link ${rateMbit} Mbit/s` : 'unshaped host link'} (MiB/s; ratio to direct; target ≥ 0.70)`);
  console.log('streams  direct  relay+proxy, host curl (CONNECT)  sandbox curl via proxy (http)  sandbox curl via proxy (CONNECT)');
  for (const r of report) {
    console.log(
      `${String(r.streams).padEnd(8)} ${String(r.direct_mib_s).padStart(6)}  ${String(r.relay_proxy_connect_mib_s).padStart(12)} (${r.relay_proxy_ratio})` +
        `  ${String(r.proxied_http_mib_s).padStart(18)} (${r.http_ratio})  ${String(r.proxied_connect_mib_s).padStart(20)} (${r.connect_ratio})`,
    );
  }
}
