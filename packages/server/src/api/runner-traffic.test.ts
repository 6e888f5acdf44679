import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobEvent } from '@kiln/core';
import { startRunner, type RunningRunner } from '@kiln/runner';
import type { FastifyRequest } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadServerConfig } from '../config.js';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

// What a real runner (real sandboxes, in-process) sends the control plane over real HTTP per job,
// counted on the server (issue 14): requests by route, and the TCP connections it opens.

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

/** The server-sent events of a stream that ended, as [event, data] pairs. */
const sseEvents = (body: string) =>
  body
    .split('\n\n')
    .map((block) => ({ event: /^event: (.*)$/m.exec(block)?.[1], data: /^data: (.*)$/m.exec(block)?.[1] }))
    .filter((e): e is { event: string; data: string } => e.event !== undefined && e.data !== undefined);

describe.each(DB_KINDS)('a runner\'s traffic to the control plane (%s)', (kind) => {
  let t: TestApp;
  let runner: RunningRunner;
  let agentKey: string;
  let url: string;
  const dirs: string[] = [];
  /** Runner requests answered, in order: route, and for events what they carried. */
  const requests: string[] = [];
  /** The same, in the order they arrived. */
  const arrived: string[] = [];
  let connections = 0;

  beforeAll(async () => {
    const artifactsDir = mkdtempSync(join(tmpdir(), 'kiln-traffic-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'kiln-traffic-runner-'));
    dirs.push(artifactsDir, dataDir);
    // The HTTP limits `kiln server` runs with by default (its keep-alive timeout among them).
    t = await openTestApp(kind, { jobs: { artifactsDir }, http: loadServerConfig({}).http });
    const name = (request: FastifyRequest) => {
      const route = request.routeOptions.url ?? '';
      if (!route.startsWith('/v1/runner/')) return undefined;
      const events = route.endsWith('/events') ? (request.body as { events: JobEvent[] }).events : [];
      return events.length > 0 ? `events(${[...new Set(events.map((e) => e.type))].join(',')})` : route.split('/').at(-1)!;
    };
    t.app.addHook('preHandler', async (request) => void arrived.push(name(request) ?? ''));
    t.app.addHook('onResponse', async (request) => void requests.push(name(request) ?? ''));
    t.app.server.on('connection', () => connections++);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    ({ agentKey } = await seedTenant(t));
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    runner = await startRunner({
      serverUrl: url,
      token: TEST_RUNNER_TOKEN,
      dataDir,
      capacity: 1,
      poolPerShape: 1,
      // No batch goes out by the clock during a test's short job: what the runner sends at the end is what is counted.
      outputFlushIntervalMs: 60_000,
      logger: quiet,
    });
  }, 120_000);
  afterAll(async () => {
    await runner?.stop();
    await t?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }, 60_000);
  beforeEach(() => {
    requests.length = 0;
    arrived.length = 0;
  });

  const submit = async (body: Record<string, unknown>, wait = false) => {
    const res = await t.call('POST', `/v1/jobs${wait ? '?wait=true' : ''}`, agentKey, body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; status: string; stdout: string | null };
  };
  const count = (name: string) => requests.filter((r) => r === name).length;
  const isOutput = (r: string) => r.startsWith('events(') && r.includes('output');

  it('costs a short printing job its lease and its report: no events request, no upload, no new connection', async () => {
    const N = 8;
    await submit({ language: 'python', code: 'print("warm")' }, true); // the first job fills what is cached
    requests.length = 0;
    for (let i = 0; i < N; i++) {
      const job = await submit({ language: 'python', code: `print(${i})` }, true);
      expect(job).toMatchObject({ status: 'succeeded', stdout: `${i}\n` });
    }
    expect(count('complete'), requests.join(' ')).toBe(N);
    // (every request here came from the runner: the test's own go in-process)
    expect(count('lease'), requests.join(' ')).toBe(N);
    expect(requests.filter(isOutput), 'output rides in the report').toEqual([]);
    expect(requests.filter((r) => r.includes('blobs'))).toEqual([]);
    // Heartbeats go by the clock (a job still running after a grace); nothing else is sent.
    expect(requests.filter((r) => !['', 'complete', 'lease', 'heartbeat'].includes(r))).toEqual([]);
    // Kept alive: since the runner started, one connection for each request it may have in flight at
    // once (its lease poll, its heartbeat poll, one report), however many jobs ran.
    expect(connections, 'connections the runner opened').toBeLessThanOrEqual(3);
  }, 120_000);

  it('gives a watcher that joined before a short job ended all of its output, then the end', async () => {
    // A job that waits for its stdin holds the only slot, so the next one stays queued while a watcher joins.
    const blocker = await submit({ language: 'python', code: 'import sys\nsys.stdin.read()', stdin_open: true });
    const job = await submit({ language: 'python', code: 'print("out line")\nprint("é, then the last line")' });
    const watching = t.call('GET', `/v1/jobs/${job.id}/events`, agentKey);
    for (let i = 0; i < 200 && t.jobDeps!.watchers.watcherCount === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(t.jobDeps!.watchers.watcherCount).toBe(1);
    for (let i = 0; i < 500; i++) {
      const status = (await t.call('GET', `/v1/jobs/${blocker.id}`, agentKey)).json().status;
      if (status === 'running') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // The blocker may take a moment to open its stdin writer: write until it is taken.
    for (let i = 0; i < 200; i++) {
      const eof = await t.app.inject({ method: 'POST', url: `/v1/jobs/${blocker.id}/stdin?eof=true`, headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/octet-stream' }, payload: '' });
      if (eof.statusCode === 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const events = sseEvents((await watching).body);
    const output = events.filter((e) => e.event === 'output').map((e) => JSON.parse(e.data) as { stream: string; data: string });
    expect(output.map((o) => `${o.stream}: ${o.data}`).join('')).toBe('stdout: out line\né, then the last line\n');
    // It came with the report, not in an events request of its own.
    expect(requests.filter(isOutput)).toEqual([]);
    expect(events.filter((e) => e.event === 'truncated')).toEqual([]);
    expect(events.at(-1)).toMatchObject({ event: 'end' });
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ id: job.id, status: 'succeeded' });
  }, 120_000);

  it('still streams a batch\'s worth of output live while the job runs, and sends the rest before its report', async () => {
    const stdout = 'x'.repeat(300_000) + '\nlast\n';
    // A full batch goes at once, not after the (here disabled) interval: a watcher sees it while the job
    // still sleeps. The rest, over the inline size, goes in its own request before the report.
    const job = await submit({ language: 'python', code: 'import time\nprint("x" * 300000, flush=True)\ntime.sleep(3)\nprint("last")' });
    const res = await fetch(`${url}/v1/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${agentKey}` } });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let body = '';
    let statusAtFirstOutput: string | undefined;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += decoder.decode(value, { stream: true });
      if (statusAtFirstOutput === undefined && /^event: output$/m.test(body)) {
        statusAtFirstOutput = (await t.call('GET', `/v1/jobs/${job.id}`, agentKey)).json().status;
      }
    }
    expect(statusAtFirstOutput, 'the first output arrived while the job ran').toBe('running');
    // (in the order they arrived: the report's answer may leave after the stream's end)
    const outputs = arrived.flatMap((r, i) => (isOutput(r) ? [i] : []));
    expect(outputs.length, arrived.join(' ')).toBeGreaterThanOrEqual(2);
    expect(outputs.at(-1), arrived.join(' ')).toBeLessThan(arrived.indexOf('complete'));
    // Read as it came (an unread stream is cut as a slow one): every byte, in order, nothing cut.
    const events = sseEvents(body);
    const live = events.filter((e) => e.event === 'output').map((e) => (JSON.parse(e.data) as { data: string }).data).join('');
    expect(live.length).toBe(stdout.length);
    expect(live === stdout, 'every byte, in order').toBe(true);
    expect(events.filter((e) => e.event === 'truncated')).toEqual([]);
    expect(events.at(-1)).toMatchObject({ event: 'end' });
  }, 120_000);
});
