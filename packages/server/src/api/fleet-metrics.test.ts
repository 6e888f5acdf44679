import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

describe.each(DB_KINDS)('queue and fleet metrics on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-metrics-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts jobs, runners and sandboxes by status from the database', async () => {
    const runner = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'm1', zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
    expect(runner.statusCode).toBe(200);
    const { agentKey } = await seedTenant(t);
    for (let i = 0; i < 3; i++) {
      expect((await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print(1)' })).statusCode).toBe(201);
    }
    const lease = await t.call('POST', '/v1/runner/lease', runner.json().credential, { free_slots: 1, wait_ms: 0 });
    expect(lease.json().leases).toHaveLength(1);
    const text = (await t.call('GET', '/metrics')).body;
    expect(text).toMatch(/^kiln_jobs\{status="queued"\} 2$/m);
    expect(text).toMatch(/^kiln_jobs\{status="running"\} 1$/m);
    expect(text).toMatch(/^kiln_runners\{status="healthy"\} 1$/m);
    expect(text).toMatch(/^kiln_sandboxes\{status="provisioning"\} 1$/m);

    // The sandbox counts follow every change (kept by triggers, not counted over all rows): ended, then deleted.
    await t.db.store.db.updateTable('sandbox_instances').set({ status: 'terminated' }).execute();
    let after = (await t.call('GET', '/metrics')).body;
    expect(after).toMatch(/^kiln_sandboxes\{status="terminated"\} 1$/m);
    expect(after).not.toMatch(/^kiln_sandboxes\{status="provisioning"\}/m);
    await t.db.store.db.deleteFrom('sandbox_instances').execute();
    after = (await t.call('GET', '/metrics')).body;
    expect(after).not.toMatch(/^kiln_sandboxes\{/m);
  });
});
