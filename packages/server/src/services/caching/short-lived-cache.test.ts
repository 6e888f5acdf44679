import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestApp, registerIdleRunner, seedTenant, TEST_ADMIN_KEY, type TestApp } from '../../api/testing.js';
import { saveQuotaOverrides } from '../../store/quotas.js';
import { DB_KINDS } from '../../store/testing.js';
import { CACHE_MAX_ENTRIES, CACHE_TTL_MS, ShortLivedCache } from './short-lived-cache.js';

const submit = (t: TestApp, key: string) => t.call('POST', '/v1/jobs', key, { language: 'python', code: 'print(1)' });

describe.each(DB_KINDS)('the short-lived caches on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let seeded: Awaited<ReturnType<typeof seedTenant>>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-short-lived-cache-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    await registerIdleRunner(t);
    seeded = await seedTenant(t);
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sees a quota set through this replica at once, and one set by another replica within the bound', async () => {
    expect((await submit(t, seeded.tenantKey)).statusCode).toBe(201);
    // Through this replica: the next submission is held to the new cap without waiting.
    const put = await t.call('PUT', `/v1/tenants/${seeded.tenant.id}/quota`, TEST_ADMIN_KEY, { concurrency: { max_queued_jobs: 1 } });
    expect(put.statusCode).toBe(200);
    const refused = await submit(t, seeded.tenantKey);
    expect(refused.statusCode).toBe(429);
    expect(refused.json().reason).toBe('queued_jobs');

    // Another replica raises it (a write this process never saw): trusted for at most the bound.
    await t.db.store.transaction((tx) =>
      saveQuotaOverrides(tx, { tenantId: seeded.tenant.id, overrides: { concurrency: { max_queued_jobs: 5 } }, nowIso: new Date().toISOString(), updatedBy: 'replica-b' }),
    );
    expect((await submit(t, seeded.tenantKey)).statusCode).toBe(429);
    t.clock.advance(CACHE_TTL_MS);
    expect((await submit(t, seeded.tenantKey)).statusCode).toBe(201);
    // The operator's own read is never cached.
    expect((await t.call('GET', `/v1/tenants/${seeded.tenant.id}/quota`, TEST_ADMIN_KEY)).json().concurrency.max_queued_jobs).toBe(5);
  });

  it('holds a job to a policy version published through this replica at once, to another replica\'s within the bound', async () => {
    const policies = (await t.call('GET', '/v1/policies', seeded.tenantKey)).json().items as { id: string; name: string; version: number; ruleset: Record<string, any> }[];
    const policy = policies.find((p) => p.name === 'default')!;
    const job = async () => (await t.call('POST', '/v1/jobs', seeded.tenantKey, { language: 'python', code: 'print(1)' })).json();
    await t.call('PUT', `/v1/tenants/${seeded.tenant.id}/quota`, TEST_ADMIN_KEY, {});
    expect((await job()).policy_version).toBe(policy.version);
    const published = await t.call('PUT', `/v1/policies/${policy.id}`, seeded.tenantKey, { ruleset: policy.ruleset, expected_version: policy.version });
    expect(published.statusCode).toBe(200);
    expect((await job()).policy_version).toBe(policy.version + 1);

    // Another replica publishes (a write this process never saw): trusted for at most the bound.
    await t.db.store.db.updateTable('policies').set({ version: policy.version + 2 }).where('id', '=', policy.id).execute();
    expect((await job()).policy_version).toBe(policy.version + 1);
    t.clock.advance(CACHE_TTL_MS);
    expect((await job()).policy_version).toBe(policy.version + 2);
  });

  it('never caches what refuses work at once: a revoked key, a suspended tenant, a disabled agent', async () => {
    const other = await seedTenant(t, 'other');
    const submitAs = (key: string) => t.call('POST', '/v1/jobs', key, { language: 'python', code: 'print(1)' });
    expect((await submitAs(other.agentKey)).statusCode).toBe(201);
    // Written behind this replica's back, as another replica would: seen by the very next request.
    await t.db.store.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', other.agent.id).execute();
    expect((await submitAs(other.agentKey)).json().code).toBe('AGENT_DISABLED');
    await t.db.store.db.updateTable('api_keys').set({ revoked_at: new Date().toISOString() }).where('id', '=', other.tenantKeyId).execute();
    expect((await submitAs(other.tenantKey)).statusCode).toBe(401);
    const third = await seedTenant(t, 'third');
    await t.db.store.db.updateTable('tenants').set({ status: 'suspended' }).where('id', '=', third.tenant.id).execute();
    expect((await submitAs(third.tenantKey)).json().code).toBe('TENANT_SUSPENDED');
  });
});

describe('the short-lived cache bounds', () => {
  it('holds at most its maximum of tenants, dropping the oldest, and distrusts a clock that went back', () => {
    const cache = new ShortLivedCache<undefined>();
    for (let i = 0; i <= CACHE_MAX_ENTRIES; i++) cache.set(`t${i}`, undefined, 1000);
    expect(cache.size).toBe(CACHE_MAX_ENTRIES);
    expect(cache.get('t0', 1000)).toBeUndefined();
    expect(cache.get(`t${CACHE_MAX_ENTRIES}`, 1000)).toBeDefined();
    expect(cache.get(`t${CACHE_MAX_ENTRIES}`, 999)).toBeUndefined();
  });
});
