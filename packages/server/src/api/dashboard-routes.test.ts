import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { DASHBOARD_CSP } from './dashboard-static.js';
import { openTestApp, registerIdleRunner, seedTenant, TEST_ADMIN_KEY, type TestApp } from './testing.js';

/** What the dashboard needs of the API (issue 13, point 2): who a key is, job filters, a job's sandboxes. */
describe.each(DB_KINDS)('the API the dashboard reads, on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let acme: Awaited<ReturnType<typeof seedTenant>>;
  let other: Awaited<ReturnType<typeof seedTenant>>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-dash-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    await registerIdleRunner(t);
    acme = await seedTenant(t, 'acme');
    other = await seedTenant(t, 'other');
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET /v1/whoami names the role, tenant, agent and key of each kind of key', async () => {
    expect((await t.call('GET', '/v1/whoami', TEST_ADMIN_KEY)).json()).toEqual({ kind: 'operator', tenant_id: null, agent_id: null, key_id: null, tenant_status: null });
    expect((await t.call('GET', '/v1/whoami', acme.tenantKey)).json()).toEqual({
      kind: 'tenant', tenant_id: acme.tenant.id, agent_id: null, key_id: acme.tenantKeyId, tenant_status: 'active',
    });
    expect((await t.call('GET', '/v1/whoami', acme.agentKey)).json()).toEqual({
      kind: 'agent', tenant_id: acme.tenant.id, agent_id: acme.agent.id, key_id: acme.agentKeyId, tenant_status: 'active',
    });
    const refused = await t.call('GET', '/v1/whoami', 'kiln_tenant_key_nope_nope');
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe('UNAUTHORIZED');
  });

  it('lists jobs by language and verdict, and refuses a value that is not one', async () => {
    const a = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(1)' })).json();
    const b = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(2)' })).json();
    expect((await t.call('POST', `/v1/jobs/${a.id}/cancel`, acme.agentKey, {})).json().verdict).toBe('canceled');
    const ids = async (q: string, key = acme.tenantKey) => (await t.call('GET', `/v1/jobs?${q}`, key)).json().items.map((j: { id: string }) => j.id);
    expect(await ids('verdict=canceled')).toEqual([a.id]);
    expect(await ids('language=python')).toEqual([b.id, a.id]);
    expect(await ids('language=python&verdict=canceled&status=canceled')).toEqual([a.id]);
    expect(await ids('language=node')).toEqual([]);
    // Another tenant's filter sees none of them.
    expect(await ids('language=python', other.tenantKey)).toEqual([]);
    for (const q of ['verdict=maybe', 'language=Py%20thon', `language=${'x'.repeat(64)}`]) {
      const res = await t.call('GET', `/v1/jobs?${q}`, acme.tenantKey);
      expect(res.statusCode, q).toBe(400);
      expect(res.json()).toMatchObject({ code: 'VALIDATION_FAILED' });
    }
  });

  it("a tenant lists the sandboxes of its own job, never the fleet's or another tenant's", async () => {
    const job = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(1)' })).json();
    const own = await t.call('GET', `/v1/sandboxes?job_id=${job.id}`, acme.agentKey);
    expect(own.statusCode).toBe(200);
    expect(own.json()).toEqual({ items: [], next_cursor: null });
    expect((await t.call('GET', `/v1/sandboxes?job_id=${job.id}`, acme.tenantKey)).statusCode).toBe(200);
    // Another tenant's job is not found, as everywhere; the fleet's lists need the operator.
    expect((await t.call('GET', `/v1/sandboxes?job_id=${job.id}`, other.tenantKey)).json().code).toBe('NOT_FOUND');
    expect((await t.call('GET', `/v1/sandboxes?session_id=ses_nope`, acme.tenantKey)).json().code).toBe('NOT_FOUND');
    for (const q of ['', '?runner_id=run_x', `?job_id=${job.id}&runner_id=run_x`]) {
      const res = await t.call('GET', `/v1/sandboxes${q}`, acme.tenantKey);
      expect(res.statusCode, q).toBe(403);
      expect(res.json().code).toBe('FORBIDDEN');
    }
    expect((await t.call('GET', `/v1/sandboxes?job_id=${job.id}`, TEST_ADMIN_KEY)).statusCode).toBe(200);
  });

  it("lists a runner's sandboxes by state (its live load), and refuses a state that is not one", async () => {
    const runner = (await t.call('GET', '/v1/runners', TEST_ADMIN_KEY)).json().items[0];
    const other = await registerIdleRunner(t, 'other-runner');
    // Instances as the runner protocol leaves them: one live on the first runner, one ended, one elsewhere.
    const job = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(1)' })).json();
    const now = new Date().toISOString();
    const row = (id: string, runnerId: string, status: string) => ({
      id, kind: 'job', job_id: job.id, session_id: null, service_id: null, runner_id: runnerId, status, created_at: now, terminated_at: status === 'running' ? null : now,
    });
    await t.db.store.db
      .insertInto('sandbox_instances')
      .values([row('sbx_live', runner.id, 'running'), row('sbx_done', runner.id, 'terminated'), row('sbx_elsewhere', other.runner_id, 'running')] as never)
      .execute();
    const ids = async (q: string) => (await t.call('GET', `/v1/sandboxes?${q}`, TEST_ADMIN_KEY)).json().items.map((s: { id: string }) => s.id);
    expect(await ids(`runner_id=${runner.id}&status=running`)).toEqual(['sbx_live']);
    expect(await ids(`runner_id=${runner.id}&status=terminated`)).toEqual(['sbx_done']);
    expect(await ids(`runner_id=${runner.id}&status=provisioning`)).toEqual([]);
    const bad = await t.call('GET', '/v1/sandboxes?status=alive', TEST_ADMIN_KEY);
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'VALIDATION_FAILED', field: 'query.status' });
  });
});

describe('the dashboard files at /ui (issue 13, point 3)', () => {
  let t: TestApp;
  let dist: string;
  beforeAll(async () => {
    dist = mkdtempSync(join(tmpdir(), 'kiln-dash-dist-'));
    mkdirSync(join(dist, 'assets'));
    writeFileSync(join(dist, 'index.html'), '<!doctype html><title>kiln</title><script type="module" src="/ui/assets/app.js"></script>');
    writeFileSync(join(dist, 'assets', 'app.js'), 'console.log(1)');
    writeFileSync(join(dist, '.env'), 'SECRET=1');
    writeFileSync(join(dist, '..', `${dist.split('/').pop()}-beside.txt`), 'not served');
    t = await openTestApp('sqlite', { dashboardDir: dist });
  });
  afterAll(async () => {
    await t.close();
    rmSync(dist, { recursive: true, force: true });
    rmSync(`${dist}-beside.txt`, { force: true });
  });

  it('serves the page at /ui and /ui/ with a CSP that allows no inline script', async () => {
    for (const url of ['/ui', '/ui/']) {
      const res = await t.call('GET', url);
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain('<title>kiln</title>');
      expect(res.headers['content-security-policy']).toBe(DASHBOARD_CSP);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
    const script = /script-src ([^;]*)/.exec(DASHBOARD_CSP)![1]!;
    expect(script).toBe("'self'");
    expect(DASHBOARD_CSP).toContain("frame-ancestors 'none'");
    const asset = await t.call('GET', '/ui/assets/app.js');
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-type']).toMatch(/javascript/);
    expect(asset.headers['cache-control']).toContain('immutable');
    expect(asset.headers['content-security-policy']).toBe(DASHBOARD_CSP);
  });

  it('serves nothing but the built files: no dotfiles, nothing beside the folder, no listing', async () => {
    const beside = `${dist.split('/').pop()}-beside.txt`;
    for (const url of ['/ui/.env', `/ui/../${beside}`, `/ui/%2e%2e/${beside}`, `/ui/..%2f${beside}`, '/ui/assets/', '/ui/assets', '/ui/nothing.js', '/ui/package.json']) {
      const res = await t.call('GET', url);
      expect(res.statusCode, url).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, url).toBeLessThan(500);
      expect(res.body, url).not.toContain('SECRET');
      expect(res.body, url).not.toContain('not served');
    }
  });

  it('says how to build the dashboard when its files are missing', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'kiln-dash-none-'));
    const bare = await openTestApp('sqlite', { dashboardDir: empty });
    try {
      const res = await bare.call('GET', '/ui/');
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ code: 'NOT_FOUND' });
      expect(res.json().detail).toContain('npm run build');
    } finally {
      await bare.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
