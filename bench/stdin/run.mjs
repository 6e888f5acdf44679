#!/usr/bin/env node
// Live stdin round trip: a Python program that echoes each line, driven line by line (each line sent
// once the answer to the one before came back), through Piston's WebSocket `/api/v2/connect`, and
// through kiln's own `POST /v1/jobs/{id}/stdin` (how long the write takes to be answered: the bytes are
// in the program's pipe then). On one `kiln up`; not part of the test suite. Both run inside the
// default policy's wall time: keep --lines to a few hundred.
//   node bench/stdin/run.mjs [--lines N]
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { summarize } from '../sandbox/stats.mjs';
import { startKilnUp } from '../support/kiln-up.mjs';

const { values: flags } = parseArgs({ options: { lines: { type: 'string', default: '200' } } });
const lines = Number(flags.lines);
if (!Number.isInteger(lines) || lines < 3) throw new Error('--lines wants an integer of at least 3');
const ECHO = 'import sys\nfor line in sys.stdin:\n    print(line.strip(), flush=True)';

/** Round trips of `lines` lines over one Piston WebSocket. */
function pistonRoundTrips(url, key) {
  return new Promise((done, fail) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v2/connect`, { headers: { authorization: key } });
    const latencies = [];
    let sentAt = 0;
    let sent = 0;
    let buffered = '';
    const next = () => {
      sentAt = performance.now();
      ws.send(JSON.stringify({ type: 'data', stream: 'stdin', data: `line ${sent++}\n` }));
    };
    ws.on('open', () => ws.send(JSON.stringify({ type: 'init', language: 'python', version: '*', files: [{ content: ECHO }] })));
    ws.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.type === 'stage') return next();
      if (m.type !== 'data' || m.stream !== 'stdout') return;
      buffered += m.data;
      while (buffered.includes('\n')) {
        buffered = buffered.slice(buffered.indexOf('\n') + 1);
        latencies.push(performance.now() - sentAt);
        if (sent < lines) next();
        else {
          ws.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
          return done(latencies.slice(1)); // the first waits for the sandbox to start
        }
      }
    });
    ws.on('error', fail);
    ws.on('close', (code) => latencies.length < lines - 1 && fail(new Error(`the WebSocket closed (${code}) after ${latencies.length} lines`)));
  });
}

/** How long `POST /v1/jobs/{id}/stdin` takes to be answered, one write after another. */
async function apiWrites(url, key) {
  const auth = { authorization: `Bearer ${key}` };
  const job = await (await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ language: 'python', code: ECHO, stdin_open: true }),
  })).json();
  for (;;) {
    const res = await fetch(`${url}/v1/jobs/${job.id}/stdin`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: 'warm\n' });
    if (res.status === 200) break;
    await new Promise((r) => setTimeout(r, 100)); // still queued
  }
  const latencies = [];
  for (let i = 0; i < lines; i++) {
    const started = performance.now();
    const res = await fetch(`${url}/v1/jobs/${job.id}/stdin`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: `line ${i}\n` });
    if (res.status !== 200) throw new Error(`write ${i}: ${res.status} ${await res.text()}`);
    latencies.push(performance.now() - started);
  }
  await fetch(`${url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: auth });
  return latencies;
}

const { url, tenantKey, stop } = await startKilnUp();
try {
  const ws = summarize(await pistonRoundTrips(url, tenantKey));
  const api = summarize(await apiWrites(url, tenantKey));
  console.log(`kiln live stdin benchmark, ${new Date().toISOString()}: ${lines} lines, one at a time`);
  console.log(`  Piston WS line -> echoed line    p50 ${ws.p50.toFixed(2)} ms  p90 ${ws.p90.toFixed(2)} ms`);
  console.log(`  POST /v1/jobs/{id}/stdin answer  p50 ${api.p50.toFixed(2)} ms  p90 ${api.p90.toFixed(2)} ms`);
} finally {
  await stop();
}
