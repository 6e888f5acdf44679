#!/usr/bin/env node
// The MCP benchmark: a python hello world as `run_code` through MCP against the same job through the
// HTTP API (`POST /v1/jobs?wait=true`), on the real `kiln up` (control plane + local runner +
// sandboxes, SQLite), in the same run, rounds alternating: the API, then Streamable HTTP at /mcp (one
// connected SDK client), then stdio (`kiln mcp`, one spawned process). MCP's added time is each
// transport's p50 minus the API's. `tools/list` round trips are timed too.
//   node bench/mcp/run.mjs [--rounds N]
import { resolve } from 'node:path';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startKilnUp } from '../support/kiln-up.mjs';

const { values: flags } = parseArgs({ options: { rounds: { type: 'string', default: '30' } } });
const rounds = Number(flags.rounds);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 1000) throw new Error('--rounds wants an integer 1..1000');
const CLI = resolve(import.meta.dirname, '../../packages/cli/bin/kiln.js');
const JOB = { language: 'python', code: 'print("hello")' };

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const timed = async (fn) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

const kiln = await startKilnUp();
const http = new Client({ name: 'bench', version: '1' });
const stdio = new Client({ name: 'bench', version: '1' });
try {
  await http.connect(new StreamableHTTPClientTransport(new URL(`${kiln.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${kiln.tenantKey}` } } }));
  await stdio.connect(new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { PATH: process.env.PATH, KILN_URL: kiln.url, KILN_API_KEY: kiln.tenantKey }, stderr: 'ignore' }));
  const api = async () => {
    const res = await fetch(`${kiln.url}/v1/jobs?wait=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${kiln.tenantKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(JOB),
    });
    const job = await res.json();
    if (job.verdict !== 'ok') throw new Error(`job failed: ${JSON.stringify(job)}`);
  };
  const viaMcp = (client) => async () => {
    const result = await client.callTool({ name: 'run_code', arguments: JOB });
    if (result.isError || result.structuredContent.verdict !== 'ok') throw new Error(`run_code failed: ${JSON.stringify(result.content)}`);
  };
  const cases = { api, mcp_http: viaMcp(http), mcp_stdio: viaMcp(stdio), list_http: () => http.listTools(), list_stdio: () => stdio.listTools() };
  for (const fn of Object.values(cases)) await fn(); // warm-up
  const samples = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let i = 0; i < rounds; i++) for (const [name, fn] of Object.entries(cases)) samples[name].push(await timed(fn));
  const stats = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, { p50_ms: +quantile(xs, 0.5).toFixed(2), p95_ms: +quantile(xs, 0.95).toFixed(2) }]));
  const report = {
    rounds,
    load_average_1m: +loadavg()[0].toFixed(2),
    ...stats,
    added_p50_ms: { mcp_http: +(stats.mcp_http.p50_ms - stats.api.p50_ms).toFixed(2), mcp_stdio: +(stats.mcp_stdio.p50_ms - stats.api.p50_ms).toFixed(2) },
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  await http.close().catch(() => {});
  await stdio.close().catch(() => {});
  await kiln.stop();
}
