import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

const shape = (name: string, ready: number) => ({ shape: name, ready, building: 1, taken: 7, missed: 2, build_failures: 0 });

describe.each(DB_KINDS)('runners\' warm pools on /metrics on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let credential: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-pool-metrics-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    const runner = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'pooled-1', zone: 'z', capacity: 4, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
    credential = runner.json().credential;
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows what the last heartbeat reported: ready and building per shape, taken and missed, memory held', async () => {
    const pool = { ready: 2, building: 1, held_memory_bytes: 805306368, shapes: [shape('none/mem=256Mi/pids=64/disk=256Mi', 2)] };
    const beat = await t.call('POST', '/v1/runner/heartbeat', credential, { leases: [], pool });
    expect(beat.statusCode).toBe(200);
    const text = (await t.call('GET', '/metrics')).body;
    expect(text).toMatch(/^kiln_runner_pool_sandboxes\{runner="pooled-1",shape="none\/mem=256Mi\/pids=64\/disk=256Mi",state="ready"\} 2$/m);
    expect(text).toMatch(/^kiln_runner_pool_sandboxes\{runner="pooled-1",shape="none\/mem=256Mi\/pids=64\/disk=256Mi",state="building"\} 1$/m);
    expect(text).toMatch(/^kiln_runner_pool_requests\{runner="pooled-1",shape="none\/mem=256Mi\/pids=64\/disk=256Mi",outcome="taken"\} 7$/m);
    expect(text).toMatch(/^kiln_runner_pool_requests\{runner="pooled-1",shape="none\/mem=256Mi\/pids=64\/disk=256Mi",outcome="missed"\} 2$/m);
    expect(text).toMatch(/^kiln_runner_pool_memory_bytes\{runner="pooled-1"\} 805306368$/m);
    // A heartbeat without a pool (a runner with KILN_RUNNER_POOL_SIZE=0) leaves the last report as it was.
    expect((await t.call('POST', '/v1/runner/heartbeat', credential, { leases: [] })).statusCode).toBe(200);
    expect((await t.call('GET', '/metrics')).body).toMatch(/^kiln_runner_pool_memory_bytes\{runner="pooled-1"\} 805306368$/m);
  });

  it('refuses an unbounded pool report (too many shapes, a huge label) and keeps the last good one', async () => {
    const many = { ready: 0, building: 0, held_memory_bytes: 0, shapes: Array.from({ length: 33 }, (_, i) => shape(`s${i}`, 0)) };
    const refused = await t.call('POST', '/v1/runner/heartbeat', credential, { leases: [], pool: many });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'VALIDATION_FAILED' });
    const long = { ready: 0, building: 0, held_memory_bytes: 0, shapes: [shape('x'.repeat(201), 0)] };
    expect((await t.call('POST', '/v1/runner/heartbeat', credential, { leases: [], pool: long })).statusCode).toBe(400);
    expect((await t.call('GET', '/metrics')).body).toMatch(/^kiln_runner_pool_memory_bytes\{runner="pooled-1"\} 805306368$/m);
  });
});
