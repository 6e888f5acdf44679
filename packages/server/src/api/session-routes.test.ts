import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RULESET, planeSigningKey } from '@kiln/core';
import { BubblewrapDriver, SessionHost } from '@kiln/runner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { sessionReaperPass } from '../services/sessions/reaper.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';


/**
 * Session routes on the real app and store (both databases) with a real runner session endpoint and
 * real sandboxes in-process: bad input is a problem document, never a 5xx; the reaper expires on the
 * app's ManualClock; another tenant's session is 404; the signing key never leaves the control plane.
 */
describe.each(DB_KINDS)('session routes (%s)', (kind) => {
  let t: TestApp;
  let artifactsDir: string;
  let host: SessionHost;
  const driver = new BubblewrapDriver();

  beforeAll(async () => {
    artifactsDir = mkdtempSync(join(tmpdir(), 'kiln-sessions-'));
    t = await openTestApp(kind, { jobs: { artifactsDir } });
  });
  afterAll(async () => {
    await host?.stop();
    await driver.drain();
    await t.close();
    rmSync(artifactsDir, { recursive: true, force: true });
  });

  it('refuses bad input with a problem document, and a session where no runner has room with 429', async () => {
    const acme = await seedTenant(t, 'acme');
    for (const body of [{ ttl_seconds: 0 }, { ttl_seconds: 'x' }, { env: { 'BAD NAME': 'x' } }, { unknown: 1 }, { files: [{ path: '../x', content: '' }] }]) {
      const res = await t.call('POST', '/v1/sessions', acme.agentKey, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
    }
    const tooLong = await t.call('POST', '/v1/sessions', acme.agentKey, { ttl_seconds: 7200 });
    expect(tooLong.statusCode).toBe(422);
    expect(tooLong.json()).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ttl_seconds', ceiling: 3600 });
    const noRoom = await t.call('POST', '/v1/sessions', acme.agentKey, {});
    expect(noRoom.statusCode).toBe(429);
    expect(noRoom.json()).toMatchObject({ code: 'RATE_LIMITED', reason: 'no_session_capacity' });
    expect((await t.call('GET', '/v1/sessions/ses_nothere', acme.agentKey)).statusCode).toBe(404);
  });

  it('expires on the clock (ttl, then idle), destroys the sandbox on the runner, and hides sessions across tenants', async () => {
    const beta = await seedTenant(t, 'beta');
    const other = await seedTenant(t, 'gamma');
    // A runner endpoint with real sandboxes, registered at its address with its own credential.
    let credential: string | undefined;
    host = new SessionHost({ driver, signingKey: () => (credential ? planeSigningKey(credential) : undefined) });
    const address = await host.start();
    const reg = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'sessions-node', zone: 'z', capacity: 1, address, languages: [{ name: 'python', version: '3.11.2' }],
    });
    credential = reg.json().credential;
    const runner = (await t.call('GET', `/v1/runners/${reg.json().runner_id}`, TEST_ADMIN_KEY)).json();
    expect(JSON.stringify(runner)).not.toMatch(/signing|[0-9a-f]{64}/);

    const policy = (
      await t.call('POST', '/v1/policies', beta.tenantKey, {
        name: 'idle-5', ruleset: { ...DEFAULT_RULESET, sessions: { max_ttl_seconds: 600, idle_timeout_seconds: 5, max_active: 4 } },
      })
    ).json();
    const byTtl = (await t.call('POST', '/v1/sessions', beta.agentKey, { policy_id: policy.id, ttl_seconds: 2 })).json();
    const byIdle = (await t.call('POST', '/v1/sessions', beta.agentKey, { policy_id: policy.id, ttl_seconds: 600 })).json();
    expect([byTtl.status, byIdle.status]).toEqual(['active', 'active']);
    expect(host.liveSessionIds().sort()).toEqual([byTtl.id, byIdle.id].sort());
    expect((await t.call('GET', `/v1/sessions/${byIdle.id}`, other.agentKey)).statusCode).toBe(404);
    expect((await t.call('POST', `/v1/sessions/${byIdle.id}/steps`, other.agentKey, { command: 'id' })).statusCode).toBe(404);

    const step = (await t.call('POST', `/v1/sessions/${byIdle.id}/steps`, beta.agentKey, { command: 'echo ok' })).json();
    expect(step).toMatchObject({ sequence: 1, status: 'succeeded', stdout: 'ok\n' });

    t.clock.advance(3000);
    await sessionReaperPass(t.jobDeps!);
    expect((await t.call('GET', `/v1/sessions/${byTtl.id}`, beta.agentKey)).json()).toMatchObject({ status: 'expired', reason: 'ttl' });
    expect((await t.call('GET', `/v1/sessions/${byIdle.id}`, beta.agentKey)).json().status).toBe('active');
    expect(host.liveSessionIds()).toEqual([byIdle.id]);
    t.clock.advance(3000);
    await sessionReaperPass(t.jobDeps!);
    expect((await t.call('GET', `/v1/sessions/${byIdle.id}`, beta.agentKey)).json()).toMatchObject({ status: 'expired', reason: 'idle' });
    expect(host.liveSessionIds()).toEqual([]);
    const audit = (await t.call('GET', '/v1/audit-events?limit=200', beta.tenantKey)).json().items.map((e: { action: string }) => e.action);
    expect(audit.filter((a: string) => a === 'session.expire')).toHaveLength(2);
  }, 60_000);
});
