// Where a proxied request's CPU goes: 16 in flight through the proxy (scoped token) to the trivial
// service for a few seconds, then the CPU each process of `kiln up` (and the sandbox) spent, per request.
//   node bench/services/where.mjs [--seconds 4] [--concurrency 16] [--profile DIR]
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { DEFAULT_RULESET } from '@kiln/core';
import { KilnClient } from '@kiln/sdk';
import { startKilnUp } from '../support/kiln-up.mjs';
import { descendantsCpu } from './processes.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('seconds', 4);
const CONCURRENCY = arg('concurrency', 16);
const SERVER = `require('http').createServer((req, res) => res.end('hello from the service\\n')).listen(8000, '127.0.0.1');`;

// `--profile DIR`: the control plane and the runner write CPU profiles there.
const profile = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;
const kiln = await startKilnUp({ nodeArgs: profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [] });
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
try {
  const client = new KilnClient({ url: kiln.url, apiKey: kiln.tenantKey });
  const policy = (await client.policies.list()).items.find((p) => p.name === 'default');
  await client.policies.publish(policy.id, { ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true } }, expected_version: policy.version });
  const svc = await client.services.create({ files: [{ path: 'server.js', content: SERVER, encoding: 'utf8' }], command: ['node', 'server.js'], port: 8000 });
  for (let i = 0; i < 300 && (await client.services.get(svc.id)).status === 'starting'; i++) await new Promise((r) => setTimeout(r, 100));
  const token = (await client.services.createToken(svc.id, { ttl_seconds: 3600 })).token;
  const url = new URL(svc.proxy_url);
  const get = () =>
    new Promise((resolve, reject) => {
      http.get({ host: url.hostname, port: url.port, path: url.pathname, agent, headers: { 'x-kiln-service-token': token } }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    });
  for (let i = 0; i < 500; i++) await get();
  const before = descendantsCpu();
  const selfBefore = process.cpuUsage();
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < until) {
      await get();
      done++;
    }
  }));
  const after = descendantsCpu();
  const self = process.cpuUsage(selfBefore);
  console.log(`${done} requests in ${SECONDS} s (${Math.round(done / SECONDS)}/s), ${CONCURRENCY} in flight; CPU ms per request by process:`);
  const rows = [['this client', (self.user + self.system) / 1000 / done]];
  for (const [pid, { cmd, seconds }] of after) {
    const was = before.get(pid)?.seconds ?? 0;
    if (seconds - was > 0) rows.push([`${cmd} (${pid})`, ((seconds - was) * 1000) / done]);
  }
  for (const [name, ms] of rows.sort((a, b) => b[1] - a[1])) console.log(`  ${ms.toFixed(3)}  ${name}`);
  await client.services.stop(svc.id);
} finally {
  agent.destroy();
  await kiln.stop();
}
