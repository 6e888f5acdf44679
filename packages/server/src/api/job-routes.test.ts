import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, registerIdleRunner, seedTenant, type TestApp } from './testing.js';

describe.each(DB_KINDS)('POST /v1/jobs?wait=true on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let agentKey: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-wait-'));
    // The server's bound is short; a request asking for ten minutes must still come back within it.
    t = await openTestApp(kind, { jobs: { artifactsDir: dir, fleet: { maxWaitMs: 200 } } });
    await registerIdleRunner(t);
    ({ agentKey } = await seedTenant(t));
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('waits no longer than the server allows, however long the client asks', async () => {
    // No runner polls, so the job stays queued: the answer can only come from the bound.
    const res = await t.call('POST', '/v1/jobs?wait=true&timeout_ms=600000', agentKey, { language: 'python', code: 'print(1)' });
    expect(res.statusCode).toBe(202);
    expect(res.headers['location']).toBe(`/v1/jobs/${res.json().id}`);
    expect(res.json()).toMatchObject({ status: 'queued', attempt: 0 });
  }, 20_000);

  it('refuses a wait beyond the largest one can ask for, and a wait that is not a yes or no', async () => {
    for (const query of ['wait=true&timeout_ms=600001', 'wait=maybe', 'wait=true&timeout_ms=-1']) {
      const res = await t.call('POST', `/v1/jobs?${query}`, agentKey, { language: 'python', code: 'print(1)' });
      expect(res.statusCode, query).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
    }
  });
});
