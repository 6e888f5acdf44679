import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepFleet } from '../services/fleet.js';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

/** The job plane's log lines, through the real app with a pino logger that writes to memory. */
describe.each(DB_KINDS)('what the control plane logs (%s)', (kind) => {
  let t: TestApp;
  let dir: string;
  let agentKey: string;
  const lines: Record<string, any>[] = [];
  const find = (msg: RegExp) => lines.filter((l) => msg.test(String(l.msg)));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-plane-log-'));
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    t = await openTestApp(kind, { jobs: { artifactsDir: dir }, logger: pino({ level: 'info' }, sink) });
    ({ agentKey } = await seedTenant(t));
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const inline = (text: string) => ({
    checksum: `sha256:${createHash('sha256').update(text).digest('hex')}`,
    size_bytes: Buffer.byteLength(text),
    content_base64: Buffer.from(text).toString('base64'),
  });
  const report = (attempt: number) => ({
    attempt, verdict: 'ok', exit_status: { code: 0, signal: null },
    resource_usage: { cpu_time_ms: 1, wall_time_ms: 1, memory_peak_bytes: 1 },
    stdout: inline('done'), stderr: inline(''), artifacts: [],
  });

  it('logs runner state changes, each job end, and each refused runner report, without the job\'s code or env', async () => {
    const runner = (await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'logged', zone: 'default', capacity: 2, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    })).json();
    expect(find(/^runner logged is healthy \(registered\)$/)).toHaveLength(1);

    const marker = 'CODE_MARKER_9f2c';
    const job = (await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: `print("${marker}")`, env: { TOKEN: 'env-value-77' } })).json();
    const lease = (await t.call('POST', '/v1/runner/lease', runner.credential, { free_slots: 1, wait_ms: 0 })).json().leases[0];
    const stale = await t.call('POST', `/v1/runner/leases/${job.id}/complete`, runner.credential, report(lease.attempt + 5));
    expect(stale.statusCode).toBe(409);
    expect(find(/^runner report refused: STALE_ATTEMPT$/)[0]).toMatchObject({ level: 40, runner_id: runner.runner_id, job_id: job.id, code: 'STALE_ATTEMPT' });

    expect((await t.call('POST', `/v1/runner/leases/${job.id}/complete`, runner.credential, report(lease.attempt))).statusCode).toBe(204);
    const ended = find(/^job ended: ok$/);
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({ level: 30, job_id: job.id, language: 'python', verdict: 'ok', status: 'succeeded' });
    expect(typeof ended[0]!.queue_ms).toBe('number');

    const queued = (await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print(2)' })).json();
    await t.call('POST', `/v1/jobs/${queued.id}/cancel`, agentKey);
    expect(find(/^job ended: canceled$/)[0]).toMatchObject({ job_id: queued.id, queue_ms: null, run_ms: null });

    // The runner stops heartbeating: degraded, then offline, each a warning.
    t.clock.advance(60_000);
    await sweepFleet(t.jobDeps!);
    expect(find(/^runner logged is offline/)[0]).toMatchObject({ level: 40, to: 'offline' });

    const all = JSON.stringify(lines);
    expect(all).not.toContain(marker);
    expect(all).not.toContain('env-value-77');
  });
});
