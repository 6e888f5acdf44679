import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobDeps } from '../services/job-deps.js';
import { topics } from '../services/notifier.js';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

const BUFFER_BYTES = 64 * 1024;
const LIVE_BUFFER_BYTES = 256 * 1024;
const MAX_PER_JOB = 24;
const MAX_PER_KEY = 30;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A raw SSE client on its own TCP connection (HTTP/1.0: no chunked framing): it can stop reading, as a hostile watcher does. */
class RawWatcher {
  readonly socket: Socket;
  private readonly received: Buffer[] = [];
  closed = false;

  constructor(port: number, path: string, key: string, read: boolean) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nAccept: text/event-stream\r\n\r\n`);
    this.socket.on('data', (b) => this.received.push(b));
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => {});
    if (!read) this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  text(): string {
    return Buffer.concat(this.received).toString('utf8');
  }

  /** The events received, in order (after the HTTP head). */
  events(): { event: string; data: any }[] {
    const out: { event: string; data: any }[] = [];
    for (const m of this.text().matchAll(/event: (\w+)\r?\ndata: (.*)\r?\n/g)) out.push({ event: m[1]!, data: JSON.parse(m[2]!) });
    return out;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe.each(DB_KINDS)('job event streams on %s', (kind) => {
  let t: TestApp;
  let deps: JobDeps;
  let dir: string;
  let port: number;
  let agentKey: string;
  let tenantKey: string;
  let runnerId: string;
  let runnerKey: string;
  const warnings: { reason: string }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-streams-'));
    t = await openTestApp(kind, {
      jobs: {
        artifactsDir: dir,
        streams: {
          watcherBufferBytes: BUFFER_BYTES,
          liveOutputMaxBytesPerJob: LIVE_BUFFER_BYTES,
          maxPerJob: MAX_PER_JOB,
          maxPerKey: MAX_PER_KEY,
          maxPerTenant: 200,
          stallTimeoutMs: 60_000,
        },
        warn: (fields) => warnings.push(fields),
      },
    });
    deps = t.jobDeps!;
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as AddressInfo).port;
    ({ agentKey, tenantKey } = await seedTenant(t));
    const runner = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'stream-node', zone: 'z', capacity: 64, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
    runnerId = runner.json().runner_id;
    runnerKey = runner.json().credential;
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A job submitted and leased by the test runner: the stream's source is live. */
  async function runningJob(): Promise<string> {
    const job = (await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print(1)' })).json();
    const lease = await t.call('POST', '/v1/runner/lease', runnerKey, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });
    expect(lease.json().leases.map((l: { job_id: string }) => l.job_id)).toEqual([job.id]);
    return job.id;
  }

  const report = (jobId: string, events: unknown[]) =>
    t.call('POST', `/v1/runner/leases/${jobId}/events`, runnerKey, { attempt: 1, events });
  const output = (text: string) => ({ type: 'output', stream: 'stdout', data_base64: Buffer.from(text).toString('base64') });

  async function complete(jobId: string): Promise<void> {
    const blob = (text: string) => ({
      checksum: `sha256:${createHash('sha256').update(text).digest('hex')}`,
      size_bytes: Buffer.byteLength(text),
      content_base64: Buffer.from(text).toString('base64'),
    });
    const done = await t.call('POST', `/v1/runner/leases/${jobId}/complete`, runnerKey, {
      attempt: 1,
      verdict: 'ok',
      exit_status: { code: 0, signal: null },
      resource_usage: { cpu_time_ms: 1, wall_time_ms: 1, memory_peak_bytes: 1 },
      stdout: blob('whole output\n'),
      stderr: blob(''),
      artifacts: [],
      rejected_artifacts: [],
      error: null,
    });
    expect(done.statusCode).toBe(204);
  }

  const droppedMetric = async (reason: string) => {
    const text = (await t.call('GET', '/metrics')).body;
    const m = new RegExp(`^kiln_live_output_dropped_bytes_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('keeps what twenty watchers that never read hold bounded while a job streams 8 MiB, and cuts them to `truncated`', async () => {
    const jobId = await runningJob();
    const slow = Array.from({ length: 20 }, () => new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, false));
    const fast = new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, true);
    await until('21 watchers', () => deps.watchers.watcherCount === 21);
    const line = `${'x'.repeat(1023)}\n`;
    const batch = line.repeat(128); // 128 KiB a report, 64 reports: 8 MiB
    let maxBuffered = 0;
    for (let i = 0; i < 64; i++) {
      expect((await report(jobId, [output(batch)])).statusCode).toBe(204);
      maxBuffered = Math.max(maxBuffered, deps.watchers.bufferedBytes());
      await sleep(1);
    }
    // Each watcher holds at most its bound, the socket's own high-water mark and a few small frames.
    expect(maxBuffered).toBeLessThanOrEqual(21 * (BUFFER_BYTES + 32 * 1024));
    await until('the fast watcher to read everything', () => (fast.text().match(/event: output/g)?.length ?? 0) >= 4096, 30_000);
    await complete(jobId);

    for (const w of slow) w.resume();
    await until('every watcher to get the end', () => [...slow, fast].every((w) => w.closed || w.text().includes('event: end')), 30_000);
    for (const w of slow) {
      const events = w.events();
      const cut = events.findIndex((e) => e.event === 'truncated');
      expect(cut, 'a slow watcher is told its output was cut').toBeGreaterThan(0);
      expect(events[cut]!.data).toMatchObject({ reason: 'slow_watcher', live_output_continues: false });
      expect(events[cut]!.data.detail).toMatch(/stdout and stderr artifacts/);
      expect(events.slice(cut + 1).map((e) => e.event)).toEqual(['end']);
      expect(events.at(-1)!.data.output_refs.stdout).toMatch(/^art_/);
    }
    const fastEvents = fast.events();
    expect(fastEvents.filter((e) => e.event === 'truncated')).toEqual([]);
    expect(fastEvents.filter((e) => e.event === 'output').map((e) => e.data.data).join('')).toBe(batch.repeat(64));
    expect(await droppedMetric('slow_watcher')).toBeGreaterThan(0);
    expect(warnings.some((w) => w.reason === 'slow_watcher')).toBe(true);
    for (const w of [...slow, fast]) w.destroy();
    await until('the watchers to be released', () => deps.watchers.watcherCount === 0 && deps.watchers.sourceCount === 0);
  }, 60_000);

  it('refuses the watcher past the per-job cap with 429 RATE_LIMITED and Retry-After, and shares one source', async () => {
    const jobId = await runningJob();
    const subscribedBefore = deps.watchers.sourceCount;
    const watchers = Array.from({ length: MAX_PER_JOB }, () => new RawWatcher(port, `/v1/jobs/${jobId}/events`, tenantKey, true));
    await until('the cap to fill', () => deps.watchers.watcherCount === MAX_PER_JOB);
    expect(deps.watchers.sourceCount - subscribedBefore).toBe(1);
    const refused = await fetch(`http://127.0.0.1:${port}/v1/jobs/${jobId}/events`, { headers: { authorization: `Bearer ${agentKey}` } });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toMatchObject({ code: 'RATE_LIMITED', scope: 'job', limit: MAX_PER_JOB });
    for (const w of watchers) w.destroy();
    await until('the watchers to be released', () => deps.watchers.watcherCount === 0);
    const again = new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, true);
    await until('a place to be free again', () => again.text().includes('event: status'));
    again.destroy();
    await complete(jobId);
  });

  it('refuses the watcher past the per-key cap, whatever the job', async () => {
    const jobs = [await runningJob(), await runningJob()];
    const watchers = Array.from({ length: MAX_PER_KEY }, (_, i) => new RawWatcher(port, `/v1/jobs/${jobs[i % 2]}/events`, agentKey, true));
    await until('the key cap to fill', () => deps.watchers.watcherCount === MAX_PER_KEY);
    const refused = await t.call('GET', `/v1/jobs/${jobs[0]}/events`, agentKey);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ code: 'RATE_LIMITED', scope: 'key' });
    // Another key of the same tenant is not held back by this one.
    const other = new RawWatcher(port, `/v1/jobs/${jobs[0]}/events`, tenantKey, true);
    await until('the other key to stream', () => other.text().includes('event: status'));
    for (const w of [...watchers, other]) w.destroy();
    await until('the watchers to be released', () => deps.watchers.watcherCount === 0);
    for (const id of jobs) await complete(id);
  });

  it('says in-band when a watcher joins after the live buffer filled, and counts what was not kept', async () => {
    const jobId = await runningJob();
    const before = await droppedMetric('live_buffer_full');
    const chunk = 'y'.repeat(64 * 1024);
    for (let i = 0; i < 6; i++) expect((await report(jobId, [output(chunk)])).statusCode).toBe(204); // 384 KiB > 256 KiB
    const late = new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, true);
    await until('the late watcher to replay and learn of the rest', () => late.text().includes('event: truncated'));
    await report(jobId, [output('after\n')]);
    await complete(jobId);
    await until('the end', () => late.text().includes('event: end'));
    const events = late.events();
    const replayed = events.filter((e) => e.event === 'output').map((e) => e.data.data).join('');
    expect(replayed.startsWith(chunk.repeat(4))).toBe(true);
    expect(replayed.endsWith('after\n')).toBe(true);
    const notice = events.find((e) => e.event === 'truncated');
    expect(notice?.data).toMatchObject({ reason: 'live_buffer_full', live_output_continues: true });
    // Two chunks past the buffer, and what came after them, were not kept.
    expect(await droppedMetric('live_buffer_full')).toBe(before + 2 * 64 * 1024 + 'after\n'.length);
    expect(warnings.some((w) => w.reason === 'live_buffer_full')).toBe(true);
    late.destroy();
  });

  it('follows output numbered by two replicas (a runner behind a load balancer) without dropping either', async () => {
    const jobId = await runningJob();
    const w = new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, true);
    await until('the watcher', () => w.text().includes('event: status'));
    const fromReplicaB = (seq: number, data: string) =>
      deps.notifier.publish(topics.job(jobId), { type: 'output', origin: 'replica-b', seq, stream: 'stdout', data });
    await report(jobId, [output('a1\n')]);
    fromReplicaB(1, 'b1\n');
    await report(jobId, [output('a2\n')]);
    fromReplicaB(2, 'b2\n');
    fromReplicaB(5, 'b5\n'); // 3 and 4 never reached this replica
    await complete(jobId);
    await until('the end', () => w.text().includes('event: end'));
    expect(w.events().filter((e) => e.event !== 'status').map((e) => [e.event, e.data.data ?? e.data.reason])).toEqual([
      ['output', 'a1\n'],
      ['output', 'b1\n'],
      ['output', 'a2\n'],
      ['output', 'b2\n'],
      ['truncated', 'not_buffered'],
      ['output', 'b5\n'],
      ['end', undefined],
    ]);
    w.destroy();
  });

  it('passes on output the runner could not deliver as `truncated`, counted by reason', async () => {
    const jobId = await runningJob();
    const w = new RawWatcher(port, `/v1/jobs/${jobId}/events`, agentKey, true);
    await until('the watcher', () => w.text().includes('event: status'));
    await report(jobId, [output('before\n'), { type: 'output_lost', stream: 'stdout', bytes: 300_000, reason: 'runner_refused' }, output('after\n')]);
    await complete(jobId);
    await until('the end', () => w.text().includes('event: end'));
    expect(w.events().filter((e) => e.event !== 'status').map((e) => [e.event, e.data.data ?? e.data.reason])).toEqual([
      ['output', 'before\n'],
      ['truncated', 'runner_refused'],
      ['output', 'after\n'],
      ['end', undefined],
    ]);
    expect(await droppedMetric('runner_refused')).toBe(300_000);
    w.destroy();
  });
});

describe('a watcher that takes nothing', () => {
  // A bound above what the kernel's socket buffers absorb, so the stream stalls rather than being cut
  // (a cut stream sends nothing more, holds nothing, and waits for the end).
  it('is closed after the stall timeout and its place freed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-stall-'));
    const t = await openTestApp('sqlite', { jobs: { artifactsDir: dir, streams: { watcherBufferBytes: 32 * 1024 * 1024, stallTimeoutMs: 300 } } });
    try {
      const deps = t.jobDeps!;
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (t.app.server.address() as AddressInfo).port;
      const { agentKey } = await seedTenant(t);
      const runner = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
        name: 'stall-node', zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3.11.2' }],
      });
      const job = (await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print(1)' })).json();
      await t.call('POST', '/v1/runner/lease', runner.json().credential, { runner_id: runner.json().runner_id, free_slots: 1, wait_ms: 0 });
      const stuck = new RawWatcher(port, `/v1/jobs/${job.id}/events`, agentKey, false);
      await until('the watcher', () => deps.watchers.watcherCount === 1);
      const data = Buffer.from('z'.repeat(256 * 1024)).toString('base64');
      for (let i = 0; i < 40 && !stuck.closed; i++) {
        await t.call('POST', `/v1/runner/leases/${job.id}/events`, runner.json().credential, { attempt: 1, events: [{ type: 'output', stream: 'stdout', data_base64: data }] });
      }
      await until('the stalled connection to be closed', () => deps.watchers.watcherCount === 0 && deps.watchers.sourceCount === 0);
      stuck.destroy();
    } finally {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
