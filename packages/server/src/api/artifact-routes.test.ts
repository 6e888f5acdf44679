import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

const inline = (text: string) => {
  const bytes = Buffer.from(text);
  return { checksum: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size_bytes: bytes.length, content_base64: bytes.toString('base64') };
};

describe.each(DB_KINDS)('artifact and job deletion, storage_uri and blob uploads on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let runnerId: string;
  let acme: Awaited<ReturnType<typeof seedTenant>>;
  let rival: Awaited<ReturnType<typeof seedTenant>>;
  let otherAgentKey: string;
  let runnerKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-art-routes-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir, fleet: { maxWaitMs: 50 } } });
    const registered = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'node', zone: 'z', capacity: 8, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
    runnerId = registered.json().runner_id;
    runnerKey = registered.json().credential;
    acme = await seedTenant(t, 'acme');
    rival = await seedTenant(t, 'rival');
    const agent = (await t.call('POST', '/v1/agents', acme.tenantKey, { name: 'second-bot' })).json();
    otherAgentKey = (await t.call('POST', `/v1/agents/${agent.id}/keys`, acme.tenantKey)).json().key;
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A job of acme's first agent, leased by the runner (running). */
  async function runningJob(): Promise<string> {
    const job = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(1)' })).json();
    const leased = (await t.call('POST', '/v1/runner/lease', runnerKey, { runner_id: runnerId, free_slots: 1, wait_ms: 0 })).json();
    expect(leased.leases.map((l: { job_id: string }) => l.job_id)).toEqual([job.id]);
    return job.id as string;
  }

  async function finishedJob(): Promise<{ jobId: string; artifactId: string }> {
    const jobId = await runningJob();
    const done = await t.call('POST', `/v1/runner/leases/${jobId}/complete`, runnerKey, {
      attempt: 1,
      verdict: 'ok',
      exit_status: { code: 0, signal: null },
      resource_usage: { cpu_time_ms: 1, wall_time_ms: 1, memory_peak_bytes: 1 },
      stdout: inline(`hello from ${jobId}\n`),
      stderr: inline(''),
      artifacts: [{ name: 'out/a.txt', ...inline(`artifact of ${jobId}`) }],
    });
    expect(done.statusCode).toBe(204);
    const job = (await t.call('GET', `/v1/jobs/${jobId}`, acme.agentKey)).json();
    return { jobId, artifactId: job.output_refs.artifacts[0] };
  }

  it('shows storage_uri to the operator only', async () => {
    const { jobId, artifactId } = await finishedJob();
    for (const key of [acme.agentKey, acme.tenantKey]) {
      const one = (await t.call('GET', `/v1/artifacts/${artifactId}`, key)).json();
      expect(one.id).toBe(artifactId);
      expect(one).not.toHaveProperty('storage_uri');
      const list = (await t.call('GET', `/v1/artifacts?owner_type=job&owner_id=${jobId}`, key)).json();
      expect(list.items).toHaveLength(3);
      for (const item of list.items) expect(item).not.toHaveProperty('storage_uri');
      expect(JSON.stringify(list)).not.toContain(dir);
    }
    const seen = (await t.call('GET', `/v1/artifacts/${artifactId}`, TEST_ADMIN_KEY)).json();
    expect(seen.storage_uri).toMatch(/^file:\/\//);
    expect((await t.call('GET', `/v1/artifacts?owner_type=job&owner_id=${jobId}`, TEST_ADMIN_KEY)).json().items).toHaveLength(3);
  });

  it('DELETE /v1/artifacts/{id}: the owner deletes, another tenant or agent gets 404, a second delete 404', async () => {
    const { artifactId } = await finishedJob();
    for (const key of [rival.tenantKey, rival.agentKey, otherAgentKey]) {
      const res = await t.call('DELETE', `/v1/artifacts/${artifactId}`, key);
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('NOT_FOUND');
    }
    expect((await t.call('GET', `/v1/artifacts/${artifactId}`, acme.agentKey)).statusCode).toBe(200);
    expect((await t.call('DELETE', `/v1/artifacts/${artifactId}`, acme.agentKey)).statusCode).toBe(204);
    expect((await t.call('GET', `/v1/artifacts/${artifactId}`, acme.agentKey)).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/artifacts/${artifactId}/content`, acme.agentKey)).statusCode).toBe(404);
    expect((await t.call('DELETE', `/v1/artifacts/${artifactId}`, acme.agentKey)).statusCode).toBe(404);
    // A tenant admin deletes any of its tenant's, the operator any.
    const second = await finishedJob();
    expect((await t.call('DELETE', `/v1/artifacts/${second.artifactId}`, acme.tenantKey)).statusCode).toBe(204);
    const third = await finishedJob();
    expect((await t.call('DELETE', `/v1/artifacts/${third.artifactId}`, TEST_ADMIN_KEY)).statusCode).toBe(204);
    const audit = (await t.call('GET', '/v1/audit-events?limit=200', acme.tenantKey)).json();
    const deletions = audit.items.filter((e: { action: string; outcome: string }) => e.action === 'artifact.delete' && e.outcome === 'success');
    expect(deletions).toHaveLength(3);
  });

  it('DELETE /v1/jobs/{id}: a running job is 409 (cancel first); an ended one goes with its artifacts', async () => {
    const running = await runningJob();
    const refused = await t.call('DELETE', `/v1/jobs/${running}`, acme.agentKey);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'CONFLICT' });
    expect(refused.json().detail).toMatch(/cancel it first/);
    expect((await t.call('POST', `/v1/jobs/${running}/cancel`, acme.agentKey)).statusCode).toBe(200);
    expect((await t.call('DELETE', `/v1/jobs/${running}`, acme.agentKey)).statusCode).toBe(204);

    const { jobId, artifactId } = await finishedJob();
    for (const key of [rival.tenantKey, rival.agentKey, otherAgentKey]) {
      expect((await t.call('DELETE', `/v1/jobs/${jobId}`, key)).statusCode).toBe(404);
    }
    expect((await t.call('DELETE', `/v1/jobs/${jobId}`, acme.agentKey)).statusCode).toBe(204);
    expect((await t.call('GET', `/v1/jobs/${jobId}`, acme.agentKey)).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/artifacts/${artifactId}`, acme.agentKey)).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/artifacts?owner_type=job&owner_id=${jobId}`, acme.tenantKey)).json().items).toEqual([]);
    expect((await t.call('DELETE', `/v1/jobs/${jobId}`, acme.agentKey)).statusCode).toBe(404);
    const byOperator = await finishedJob();
    expect((await t.call('DELETE', `/v1/jobs/${byOperator.jobId}`, TEST_ADMIN_KEY)).statusCode).toBe(204);
  });

  it('a blob upload that is not application/octet-stream is 415, one without a body 400, never 500', async () => {
    const jobId = await runningJob();
    const url = `/v1/runner/leases/${jobId}/blobs?attempt=1`;
    const put = (headers: Record<string, string>, payload?: string | Buffer) =>
      t.app.inject({ method: 'PUT', url, headers: { authorization: `Bearer ${runnerKey}`, ...headers }, ...(payload === undefined ? {} : { payload }) });
    const cases: [Record<string, string>, string | Buffer | undefined, number][] = [
      [{}, undefined, 400],
      [{ 'content-type': 'application/octet-stream' }, undefined, 400],
      [{ 'content-type': 'application/json' }, '{"a":1}', 415],
      [{ 'content-type': 'application/json' }, '"a JSON string"', 415],
      [{ 'content-type': 'text/plain' }, 'some text', 415],
    ];
    for (const [headers, payload, status] of cases) {
      const res = await put(headers, payload);
      expect(res.statusCode, JSON.stringify(headers)).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
    // The refusal comes before any lookup: an unknown job answers the same.
    const unknown = await t.app.inject({ method: 'PUT', url: '/v1/runner/leases/job_missing/blobs?attempt=1', headers: { authorization: `Bearer ${runnerKey}`, 'content-type': 'text/plain' }, payload: 'x' });
    expect(unknown.statusCode).toBe(415);
    // Raw bytes are stored exactly as sent.
    const bytes = Buffer.from('"a JSON string"');
    const ok = await put({ 'content-type': 'application/octet-stream' }, bytes);
    expect(ok.statusCode).toBe(201);
    expect(ok.json()).toEqual({ checksum: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size_bytes: bytes.length });
  });
});
