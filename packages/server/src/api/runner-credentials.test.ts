import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

/**
 * Issue 7, point 6, through the HTTP API: the fleet-wide join token only registers; each runner's own
 * credential binds everything it does afterwards to that runner.
 */
describe.each(DB_KINDS)('per-runner credentials on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let agentKey: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-runner-creds-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    ({ agentKey } = await seedTenant(t));
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const register = (name: string, key = TEST_RUNNER_TOKEN) =>
    t.call('POST', '/v1/runner/register', key, {
      name, zone: 'default', capacity: 2, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
  const submit = async () => {
    const res = await t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print("secret work")', env: { TOKEN: 'tenant-env-value' } });
    expect(res.statusCode).toBe(201);
    return res.json().id as string;
  };
  const inline = (text: string) => ({
    checksum: `sha256:${createHash('sha256').update(text).digest('hex')}`,
    size_bytes: Buffer.byteLength(text),
    content_base64: Buffer.from(text).toString('base64'),
  });
  const report = (attempt: number, stdout: string) => ({
    attempt, verdict: 'ok', exit_status: { code: 0, signal: null },
    resource_usage: { cpu_time_ms: 1, wall_time_ms: 1, memory_peak_bytes: 1 },
    stdout: inline(stdout), stderr: inline(''), artifacts: [],
  });

  it('the join token alone cannot lease, heartbeat, read specs or report', async () => {
    const a = (await register('cred-a')).json();
    const jobId = await submit();
    for (const [method, url, body] of [
      ['POST', '/v1/runner/lease', { free_slots: 4, wait_ms: 0 }],
      ['POST', '/v1/runner/heartbeat', { leases: [] }],
      ['POST', `/v1/runner/leases/${jobId}/events`, { attempt: 1, events: [{ type: 'started' }] }],
      ['POST', `/v1/runner/leases/${jobId}/complete`, report(1, 'forged')],
    ] as const) {
      const res = await t.call(method, url, TEST_RUNNER_TOKEN, body);
      expect(res.statusCode, url).toBe(403);
      expect(res.json().code).toBe('FORBIDDEN');
      expect(res.body).not.toContain('tenant-env-value');
    }
    const job = (await t.call('GET', `/v1/jobs/${jobId}`, agentKey)).json();
    expect(job).toMatchObject({ status: 'queued', attempt: 0 });
    // A made-up or revoked credential is 401, and neither opens the tenant API.
    const fake = `kiln_runner_run_${'0'.repeat(26)}_${'a'.repeat(64)}`;
    expect((await t.call('POST', '/v1/runner/lease', fake, { free_slots: 1, wait_ms: 0 })).statusCode).toBe(401);
    expect((await t.call('GET', '/v1/jobs', a.credential)).statusCode).toBe(403);
    expect((await t.call('GET', '/v1/runners', a.credential)).statusCode).toBe(403);
    // The credential leases: the job it gets is its own from then on. Clean up for the next test.
    const leased = (await t.call('POST', '/v1/runner/lease', a.credential, { free_slots: 4, wait_ms: 0 })).json();
    expect(leased.leases.map((l: { job_id: string }) => l.job_id)).toContain(jobId);
    for (const l of leased.leases) {
      expect((await t.call('POST', `/v1/runner/leases/${l.job_id}/complete`, a.credential, report(l.attempt, 'done'))).statusCode).toBe(204);
    }
  });

  it('refuses a body runner_id that is not the credential\'s runner', async () => {
    const a = (await register('body-a')).json();
    const b = (await register('body-b')).json();
    for (const url of ['/v1/runner/lease', '/v1/runner/heartbeat']) {
      const body = url.endsWith('lease') ? { runner_id: a.runner_id, free_slots: 1, wait_ms: 0 } : { runner_id: a.runner_id, leases: [] };
      const res = await t.call('POST', url, b.credential, body);
      expect(res.statusCode, url).toBe(403);
      expect(res.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    const own = await t.call('POST', '/v1/runner/heartbeat', b.credential, { runner_id: b.runner_id, leases: [] });
    expect(own.statusCode).toBe(200);
  });

  it('a forged completion by runner B for A\'s lease is refused, audited as B\'s refusal, and A\'s job is unaffected', async () => {
    const a = (await register('forge-a')).json();
    const b = (await register('forge-b')).json();
    const jobId = await submit();
    const [lease] = (await t.call('POST', '/v1/runner/lease', a.credential, { free_slots: 1, wait_ms: 0 })).json().leases;
    expect(lease.job_id).toBe(jobId);
    const forged = await t.call('POST', `/v1/runner/leases/${jobId}/complete`, b.credential, report(lease.attempt, 'forged by B'));
    expect(forged.statusCode).toBe(403);
    expect(forged.json().code).toBe('FORBIDDEN');
    const blob = await t.app.inject({
      method: 'PUT', url: `/v1/runner/leases/${jobId}/blobs?attempt=${lease.attempt}`,
      headers: { authorization: `Bearer ${b.credential}`, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('forged bytes'),
    });
    expect(blob.statusCode).toBe(403);
    expect((await t.call('GET', `/v1/jobs/${jobId}`, agentKey)).json()).toMatchObject({ status: 'running', attempt: 1, verdict: null });
    const refusals = await t.db.store.db.selectFrom('audit_events').selectAll()
      .where('resource_id', '=', jobId).where('outcome', '=', 'denied').execute();
    expect(refusals.map((e) => [e.action, e.actor_id])).toEqual(
      expect.arrayContaining([['job.complete', b.runner_id], ['job.upload_blob', b.runner_id]]),
    );
    const ok = await t.call('POST', `/v1/runner/leases/${jobId}/complete`, a.credential, report(lease.attempt, 'from A'));
    expect(ok.statusCode).toBe(204);
    expect((await t.call('GET', `/v1/jobs/${jobId}`, agentKey)).json()).toMatchObject({ status: 'succeeded', stdout: 'from A' });
    const [done] = await t.db.store.db.selectFrom('audit_events').selectAll()
      .where('resource_id', '=', jobId).where('action', '=', 'job.complete').where('outcome', '=', 'success').execute();
    expect(done!.actor_id).toBe(a.runner_id);
  });

  it('refuses a name takeover of a live runner with the join token; the runner\'s own credential re-registers', async () => {
    const a = (await register('live-a')).json();
    const takeover = await register('live-a');
    expect(takeover.statusCode).toBe(409);
    expect(takeover.json()).toMatchObject({ code: 'CONFLICT', field: 'body.name' });
    expect(takeover.json().credential).toBeUndefined();
    // The live runner's credential still works.
    expect((await t.call('POST', '/v1/runner/heartbeat', a.credential, { leases: [] })).statusCode).toBe(200);
    const restart = await register('live-a', a.credential);
    expect(restart.statusCode).toBe(200);
    expect(restart.json()).toMatchObject({ runner_id: a.runner_id, credential: null });
    // Its credential names one runner: it cannot register another name.
    expect((await register('live-other', a.credential)).statusCode).toBe(409);
  });

  it('the operator revokes a credential: its calls are refused at once', async () => {
    const a = (await register('revoke-a')).json();
    const revoked = await t.call('DELETE', `/v1/runners/${a.runner_id}/credential`, TEST_ADMIN_KEY);
    expect(revoked.statusCode).toBe(200);
    const refused = await t.call('POST', '/v1/runner/heartbeat', a.credential, { leases: [] });
    expect(refused.statusCode).toBe(401);
    expect(refused.json().detail).toContain('register again');
    const other = (await register('revoke-b')).json();
    expect((await t.call('DELETE', `/v1/runners/${a.runner_id}/credential`, other.credential)).statusCode).toBe(403);
    const again = (await register('revoke-a')).json();
    expect(again.runner_id).toBe(a.runner_id);
    expect((await t.call('POST', '/v1/runner/heartbeat', again.credential, { leases: [] })).statusCode).toBe(200);
  });
});
