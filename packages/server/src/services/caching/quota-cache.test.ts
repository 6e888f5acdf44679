import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestApp, registerIdleRunner, seedTenant, TEST_ADMIN_KEY, type TestApp } from '../../api/testing.js';
import { saveQuotaOverrides } from '../../store/quotas.js';
import { DB_KINDS } from '../../store/testing.js';
import { QUOTA_CACHE_MAX_TENANTS, QUOTA_CACHE_TTL_MS, QuotaOverridesCache } from './quota-cache.js';

const submit = (t: TestApp, key: string) => t.call('POST', '/v1/jobs', key, { language: 'python', code: 'print(1)' });

describe.each(DB_KINDS)('the quota cache on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let seeded: Awaited<ReturnType<typeof seedTenant>>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-quota-cache-'));
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
    t.clock.advance(QUOTA_CACHE_TTL_MS);
    expect((await submit(t, seeded.tenantKey)).statusCode).toBe(201);
    // The operator's own read is never cached.
    expect((await t.call('GET', `/v1/tenants/${seeded.tenant.id}/quota`, TEST_ADMIN_KEY)).json().concurrency.max_queued_jobs).toBe(5);
  });
});

describe('the quota cache bounds', () => {
  it('holds at most its maximum of tenants, dropping the oldest, and distrusts a clock that went back', () => {
    const cache = new QuotaOverridesCache();
    for (let i = 0; i <= QUOTA_CACHE_MAX_TENANTS; i++) cache.set(`t${i}`, undefined, 1000);
    expect(cache.size).toBe(QUOTA_CACHE_MAX_TENANTS);
    expect(cache.get('t0', 1000)).toBeUndefined();
    expect(cache.get(`t${QUOTA_CACHE_MAX_TENANTS}`, 1000)).toBeDefined();
    expect(cache.get(`t${QUOTA_CACHE_MAX_TENANTS}`, 999)).toBeUndefined();
  });
});
