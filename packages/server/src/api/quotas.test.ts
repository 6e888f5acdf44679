import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RULESET, DEFAULT_TENANT_QUOTA, type Ruleset } from '@kiln/core';
import { KilnClient, PolicyViolationError, RateLimitError } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServerConfig } from '../config.js';
import { startServer } from '../server.js';
import { queuedJobRow } from '../store/jobs.js';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** The policy of the issue: 64 GiB of memory and workspace, 32,768 pids, 24 h of wall time, 100,000 jobs. */
const ATTACKS: { path: string; ruleset: Ruleset }[] = [
  { path: 'limits.memory_bytes', ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, memory_bytes: 64 * GiB } } },
  { path: 'limits.disk_bytes', ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, disk_bytes: 64 * GiB } } },
  { path: 'limits.pids', ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, pids: 32768 } } },
  { path: 'limits.wall_time_ms', ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, wall_time_ms: 24 * 3600 * 1000 } } },
  { path: 'concurrency.max_running_jobs', ruleset: { ...DEFAULT_RULESET, concurrency: { max_running_jobs: 100_000 } } },
];
const ALL_AT_ONCE: Ruleset = {
  ...DEFAULT_RULESET,
  limits: { ...DEFAULT_RULESET.limits, memory_bytes: 64 * GiB, disk_bytes: 64 * GiB, pids: 32768, wall_time_ms: 24 * 3600 * 1000 },
  concurrency: { max_running_jobs: 100_000 },
};

function ceilingOf(path: string): number {
  const [section, name] = path.split('.') as [keyof typeof DEFAULT_TENANT_QUOTA, string];
  return (DEFAULT_TENANT_QUOTA[section] as Record<string, number>)[name]!;
}

describe('quota defaults from the configuration', () => {
  it('reads KILN_QUOTA_* and refuses a value out of bounds, naming the variable', () => {
    const config = loadServerConfig({ KILN_QUOTA_MEMORY_BYTES: String(GiB), KILN_QUOTA_MAX_QUEUED_JOBS: '7', KILN_QUOTA_RATE_PER_SECOND: '2.5' });
    expect(config.quotaDefaults.limits.memory_bytes).toBe(GiB);
    expect(config.quotaDefaults.concurrency.max_queued_jobs).toBe(7);
    expect(config.quotaDefaults.rate_limit).toEqual({ requests_per_second: 2.5, burst: DEFAULT_TENANT_QUOTA.rate_limit.burst });
    expect(config.quotaDefaults.limits.pids).toBe(DEFAULT_TENANT_QUOTA.limits.pids);
    expect(() => loadServerConfig({ KILN_QUOTA_PIDS: '0' })).toThrow(/KILN_QUOTA_PIDS/);
    expect(() => loadServerConfig({ KILN_QUOTA_MEMORY_BYTES: 'lots' })).toThrow(/KILN_QUOTA_MEMORY_BYTES/);
  });
});

describe('quota defaults in a started server', () => {
  it('bind new tenants: their default policy is lowered to them, and a policy above them is refused', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'kiln-quota-server-'));
    const server = await startServer(
      loadServerConfig({ KILN_DATA_DIR: dataDir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent', KILN_QUOTA_MEMORY_BYTES: String(128 * MiB) }),
    );
    try {
      const operator = new KilnClient({ url: server.url, apiKey: server.adminKey.key });
      const tenant = await operator.tenants.create({ name: 'configured' });
      expect((await operator.tenants.getQuota(tenant.id)).limits.memory_bytes).toBe(128 * MiB);
      const admin = new KilnClient({ url: server.url, apiKey: (await operator.tenants.createKey(tenant.id)).key });
      const [policy] = (await admin.policies.list()).items;
      expect(policy!.ruleset.limits.memory_bytes).toBe(128 * MiB);
      const refused = await admin.policies
        .publish(policy!.id, { ruleset: { ...policy!.ruleset, limits: { ...policy!.ruleset.limits, memory_bytes: 256 * MiB } }, expected_version: 1 })
        .catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(PolicyViolationError);
      expect(refused).toMatchObject({ field: 'body.ruleset.limits.memory_bytes', problem: { ceiling: 128 * MiB } });
    } finally {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe.each(DB_KINDS)('tenant quotas on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let seq = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-quotas-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    // A runner that offers python and never polls: submitted jobs stay queued.
    const registered = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
      name: 'idle', zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3.11.2' }],
    });
    expect(registered.statusCode).toBe(200);
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh tenant per test, and its default policy. */
  async function tenant() {
    const seeded = await seedTenant(t, `q${++seq}`);
    const policy = (await t.call('GET', '/v1/policies', seeded.tenantKey)).json().items[0];
    return { ...seeded, policy };
  }

  const job = { language: 'python', code: 'print(1)' };

  async function queuedJobs(tenantId: string): Promise<number> {
    const rows = await t.db.store.db.selectFrom('jobs').select('id').where('tenant_id', '=', tenantId).execute();
    return rows.length;
  }

  it('refuses each policy of the attack when it is published, naming the field and the ceiling, and changes nothing', async () => {
    const { tenantKey, policy } = await tenant();
    for (const attack of ATTACKS) {
      const res = await t.call('PUT', `/v1/policies/${policy.id}`, tenantKey, { ruleset: attack.ruleset, expected_version: 1 });
      expect(res.statusCode, attack.path).toBe(422);
      expect(res.json()).toMatchObject({
        code: 'POLICY_VIOLATION',
        field: `body.ruleset.${attack.path}`,
        ceiling: ceilingOf(attack.path),
      });
    }
    const all = await t.call('PUT', `/v1/policies/${policy.id}`, tenantKey, { ruleset: ALL_AT_ONCE, expected_version: 1 });
    expect(all.statusCode).toBe(422);
    expect(all.json().errors.map((e: { field: string }) => e.field).sort()).toEqual(ATTACKS.map((a) => `body.ruleset.${a.path}`).sort());
    // Nothing was published.
    expect((await t.call('GET', `/v1/policies/${policy.id}`, tenantKey)).json().version).toBe(1);
    expect((await t.call('GET', `/v1/policies/${policy.id}/versions`, tenantKey)).json().items).toHaveLength(1);
  });

  it('refuses to create a policy above the quota (named "default" too) and creates nothing', async () => {
    const { tenantKey, tenant: ten } = await tenant();
    for (const name of ['big', 'default']) {
      const res = await t.call('POST', '/v1/policies', tenantKey, { name, ruleset: ATTACKS[0]!.ruleset });
      expect(res.statusCode).toBe(422);
      expect(res.json()).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ruleset.limits.memory_bytes', ceiling: 4 * GiB });
    }
    const names = (await t.call('GET', '/v1/policies', tenantKey)).json().items.map((p: { name: string }) => p.name);
    expect(names).toEqual(['default']);
    // The refusal is in the tenant's audit.
    const audit = await t.db.store.db
      .selectFrom('audit_events')
      .select(['outcome', 'details'])
      .where('tenant_id', '=', ten.id)
      .where('action', '=', 'policy.create')
      .execute();
    expect(audit).toHaveLength(2);
    expect(audit.every((e) => e.outcome === 'error' && e.details.includes('POLICY_VIOLATION'))).toBe(true);
  });

  it('accepts the same policy once the operator raises the quota; the tenant reads its quota but cannot set it', async () => {
    const { tenantKey, agentKey, tenant: ten, policy } = await tenant();
    const raised = await t.call('PUT', `/v1/tenants/${ten.id}/quota`, TEST_ADMIN_KEY, {
      limits: { memory_bytes: 64 * GiB, disk_bytes: 64 * GiB, pids: 32768, wall_time_ms: 24 * 3600 * 1000 },
      concurrency: { max_running_jobs: 100_000 },
    });
    expect(raised.statusCode).toBe(200);
    expect(raised.json()).toMatchObject({
      tenant_id: ten.id,
      limits: { memory_bytes: 64 * GiB, cpu_time_ms: DEFAULT_TENANT_QUOTA.limits.cpu_time_ms },
      concurrency: { max_running_jobs: 100_000, max_queued_jobs: DEFAULT_TENANT_QUOTA.concurrency.max_queued_jobs },
      overrides: { limits: { memory_bytes: 64 * GiB } },
    });
    const published = await t.call('PUT', `/v1/policies/${policy.id}`, tenantKey, { ruleset: ALL_AT_ONCE, expected_version: 1 });
    expect(published.statusCode).toBe(200);
    expect(published.json().version).toBe(2);

    for (const key of [tenantKey, agentKey]) {
      const own = await t.call('GET', '/v1/quota', key);
      expect(own.statusCode).toBe(200);
      expect(own.json()).toMatchObject({ tenant_id: ten.id, limits: { memory_bytes: 64 * GiB } });
    }
    expect((await t.call('GET', `/v1/tenants/${ten.id}/quota`, TEST_ADMIN_KEY)).json().limits.pids).toBe(32768);
    for (const key of [tenantKey, agentKey]) {
      expect((await t.call('PUT', `/v1/tenants/${ten.id}/quota`, key, { limits: { pids: 1 } })).statusCode).toBe(403);
      expect((await t.call('GET', `/v1/tenants/${ten.id}/quota`, key)).statusCode).toBe(403);
    }
    const audit = await t.db.store.db
      .selectFrom('audit_events')
      .select('actor_id')
      .where('tenant_id', '=', ten.id)
      .where('action', '=', 'tenant.quota.update')
      .where('outcome', '=', 'success')
      .execute();
    expect(audit).toEqual([{ actor_id: 'operator' }]);
  });

  it('refuses a bad quota with the field at fault, and an unknown tenant with 404', async () => {
    const { tenant: ten } = await tenant();
    for (const [body, field] of [
      [{ limits: { memory_bytes: 65 * GiB } }, 'body.limits.memory_bytes'],
      [{ rate_limit: { burst: 0 } }, 'body.rate_limit.burst'],
      [{ concurrency: { max_queued_jobs: -1 } }, 'body.concurrency.max_queued_jobs'],
      [{ limits: { nonsense: 1 } }, 'body.limits'],
      [{ artifact_storage_bytes: 'lots' }, 'body.artifact_storage_bytes'],
    ] as const) {
      const res = await t.call('PUT', `/v1/tenants/${ten.id}/quota`, TEST_ADMIN_KEY, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().field).toBe(field);
    }
    expect((await t.call('GET', `/v1/tenants/${ten.id}/quota`, TEST_ADMIN_KEY)).json().updated_at).toBeNull();
    const missing = await t.call('PUT', '/v1/tenants/ten_00000000000000000000000000/quota', TEST_ADMIN_KEY, {});
    expect(missing.statusCode).toBe(404);
  });

  it('holds jobs of a policy published before the quota was lowered to the lower of the two', async () => {
    const { tenant: ten, agentKey, policy } = await tenant();
    const lowered = await t.call('PUT', `/v1/tenants/${ten.id}/quota`, TEST_ADMIN_KEY, {
      limits: { memory_bytes: 128 * MiB },
      concurrency: { max_running_jobs: 2 },
    });
    expect(lowered.statusCode).toBe(200);
    expect(lowered.json().policies_above_quota).toEqual([
      { policy_id: policy.id, fields: ['ruleset.limits.memory_bytes', 'ruleset.concurrency.max_running_jobs'] },
    ]);
    const accepted = await t.call('POST', '/v1/jobs', agentKey, job);
    expect(accepted.statusCode).toBe(201);
    const row = await t.db.store.db.selectFrom('jobs').select(['request', 'max_running_jobs']).where('id', '=', accepted.json().id).executeTakeFirstOrThrow();
    expect(JSON.parse(row.request).limits.memory_bytes).toBe(128 * MiB);
    expect(row.max_running_jobs).toBe(2);
    const tooBig = await t.call('POST', '/v1/jobs', agentKey, { ...job, limits: { memory_bytes: 200 * MiB } });
    expect(tooBig.statusCode).toBe(422);
    expect(tooBig.json()).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.limits.memory_bytes', ceiling: 128 * MiB });
  });

  it('answers 429 with Retry-After once the tenant has its cap of queued jobs, and inserts nothing', async () => {
    const a = await tenant();
    const b = await tenant();
    await t.call('PUT', `/v1/tenants/${a.tenant.id}/quota`, TEST_ADMIN_KEY, { concurrency: { max_queued_jobs: 3 } });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.call('POST', '/v1/jobs', a.agentKey, job);
      expect(res.statusCode).toBe(201);
      ids.push(res.json().id);
    }
    for (let i = 0; i < 5; i++) {
      const full = await t.call('POST', '/v1/jobs', i % 2 ? a.tenantKey : a.agentKey, job);
      expect(full.statusCode).toBe(429);
      expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(full.json()).toMatchObject({ code: 'RATE_LIMITED', reason: 'queued_jobs', limit: 3, retry_after: Number(full.headers['retry-after']) });
    }
    expect(await queuedJobs(a.tenant.id)).toBe(3);
    // Another tenant's queue is its own.
    expect((await t.call('POST', '/v1/jobs', b.agentKey, job)).statusCode).toBe(201);
    // A place freed is a place taken.
    expect((await t.call('POST', `/v1/jobs/${ids[0]}/cancel`, a.agentKey, {})).statusCode).toBe(200);
    expect((await t.call('POST', '/v1/jobs', a.agentKey, job)).statusCode).toBe(201);
    expect((await t.call('POST', '/v1/jobs', a.agentKey, job)).statusCode).toBe(429);
  });

  it('with the defaults, the flood of the issue stops at the key\'s burst, then at the queue\'s cap', async () => {
    const a = await tenant();
    const { burst } = DEFAULT_TENANT_QUOTA.rate_limit;
    const cap = DEFAULT_TENANT_QUOTA.concurrency.max_queued_jobs;
    const statuses: number[] = [];
    for (let i = 0; i < burst + 20; i++) statuses.push((await t.call('POST', '/v1/jobs', a.agentKey, job)).statusCode);
    expect(statuses.filter((s) => s === 201)).toHaveLength(burst);
    expect(statuses.slice(burst).every((s) => s === 429)).toBe(true);
    // Fill the queue up to the cap directly (as many submissions over time would), then try once more.
    const template = await t.db.store.db.selectFrom('jobs').selectAll().where('tenant_id', '=', a.tenant.id).executeTakeFirstOrThrow();
    const rows = Array.from({ length: cap - burst }, () => queuedJobRow(template, t.clock.nowMs()));
    for (let i = 0; i < rows.length; i += 100) await t.db.store.db.insertInto('jobs').values(rows.slice(i, i + 100)).execute();
    t.clock.advance(60_000);
    const full = await t.call('POST', '/v1/jobs', a.agentKey, job);
    expect(full.statusCode).toBe(429);
    expect(full.json()).toMatchObject({ reason: 'queued_jobs', limit: cap });
    expect(await queuedJobs(a.tenant.id)).toBe(cap);
  }, 60_000);

  it('lets exactly the cap through when many submit at once', async () => {
    const a = await tenant();
    await t.call('PUT', `/v1/tenants/${a.tenant.id}/quota`, TEST_ADMIN_KEY, { concurrency: { max_queued_jobs: 5 } });
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) => t.call('POST', '/v1/jobs', i % 2 ? a.agentKey : a.tenantKey, job)),
    );
    const statuses = answers.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(19);
    expect(await queuedJobs(a.tenant.id)).toBe(5);
  });

  it('answers 429 with Retry-After to a key past its rate, per key, and lets it back once tokens refill', async () => {
    const a = await tenant();
    await t.call('PUT', `/v1/tenants/${a.tenant.id}/quota`, TEST_ADMIN_KEY, { rate_limit: { requests_per_second: 1, burst: 5 } });
    for (let i = 0; i < 5; i++) {
      expect((await t.call('POST', '/v1/agents', a.tenantKey, { name: `burst-${i}` })).statusCode).toBe(201);
    }
    const refusals = [];
    for (let i = 0; i < 10; i++) refusals.push(await t.call('POST', '/v1/agents', a.tenantKey, { name: `over-${i}` }));
    for (const res of refusals) {
      expect(res.statusCode).toBe(429);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json()).toMatchObject({ code: 'RATE_LIMITED', reason: 'key_rate', retry_after: 1 });
    }
    // Every kind of write counts, valid or not; reads do not.
    expect((await t.call('POST', '/v1/jobs', a.tenantKey, { nonsense: true })).statusCode).toBe(429);
    expect((await t.call('GET', '/v1/agents', a.tenantKey)).statusCode).toBe(200);
    // The agent's key has a bucket of its own; the operator is not limited.
    expect((await t.call('POST', '/v1/jobs', a.agentKey, job)).statusCode).toBe(201);
    expect((await t.call('PUT', `/v1/tenants/${a.tenant.id}/quota`, TEST_ADMIN_KEY, { rate_limit: { requests_per_second: 1, burst: 5 } })).statusCode).toBe(200);
    // Eleven refusals in a row leave one audit row, not eleven.
    const audited = await t.db.store.db
      .selectFrom('audit_events')
      .select('details')
      .where('tenant_id', '=', a.tenant.id)
      .where('outcome', '=', 'error')
      .execute();
    expect(audited.filter((e) => e.details.includes('RATE_LIMITED'))).toHaveLength(1);
    expect((await queuedJobs(a.tenant.id))).toBe(1);
    const agents = (await t.call('GET', '/v1/agents?limit=200', a.tenantKey)).json().items;
    expect(agents).toHaveLength(6); // the seeded one and the burst of five

    t.clock.advance(1000);
    expect((await t.call('POST', '/v1/agents', a.tenantKey, { name: 'after-refill' })).statusCode).toBe(201);
    expect((await t.call('POST', '/v1/agents', a.tenantKey, { name: 'too-soon' })).statusCode).toBe(429);
  });

  it('throws RateLimitError with retryAfter in the SDK, against the real server', async () => {
    const a = await tenant();
    await t.call('PUT', `/v1/tenants/${a.tenant.id}/quota`, TEST_ADMIN_KEY, {
      rate_limit: { requests_per_second: 0.25, burst: 2 },
      concurrency: { max_queued_jobs: 1 },
    });
    // Listening for real (closed with the app after the file's tests).
    const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
    {
      const agent = new KilnClient({ url, apiKey: a.agentKey });
      await agent.jobs.create(job);
      const queueFull = await agent.jobs.create(job).catch((err: unknown) => err);
      expect(queueFull).toBeInstanceOf(RateLimitError);
      expect((queueFull as RateLimitError).problem.reason).toBe('queued_jobs');
      expect((queueFull as RateLimitError).retryAfter).toBeGreaterThanOrEqual(1);
      const overRate = await agent.jobs.create(job).catch((err: unknown) => err);
      expect(overRate).toBeInstanceOf(RateLimitError);
      expect(overRate).toMatchObject({ name: 'RateLimitError', status: 429, code: 'RATE_LIMITED', retryAfter: 4 });
      expect((overRate as RateLimitError).problem.reason).toBe('key_rate');
      const quota = await new KilnClient({ url, apiKey: a.tenantKey }).quota();
      expect(quota.rate_limit).toEqual({ requests_per_second: 0.25, burst: 2 });
    }
  });
});
