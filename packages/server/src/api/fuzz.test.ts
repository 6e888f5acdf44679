import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

// Random requests at the real app (in-process, real database): whatever arrives, the answer is never a
// 5xx, always has a body, and an error is always problem+json with a stable code.
const RUNS: Record<string, number> = { sqlite: 2000, postgres: 1000 };

describe.each(DB_KINDS)('random requests on %s', (kind) => {
  let t: TestApp;
  let ids: string[];
  let keys: string[];
  let artifactsDir: string;

  beforeAll(async () => {
    artifactsDir = mkdtempSync(join(tmpdir(), 'kiln-fuzz-'));
    // The job, runner and fleet routes too; `wait` is kept short so no request lingers.
    t = await openTestApp(kind, { bodyLimitBytes: 16 * 1024, jobs: { artifactsDir, fleet: { maxWaitMs: 50 } } });
    const a = await seedTenant(t, 'fuzz-a');
    const b = await seedTenant(t, 'fuzz-b');
    const policy = (await t.call('GET', '/v1/policies', a.tenantKey)).json().items[0].id as string;
    ids = [a.tenant.id, b.tenant.id, a.agent.id, b.agent.id, a.agentKeyId, policy, 'ten_00000000000000000000000000', '..', '%00', 'x'.repeat(300)];
    keys = [TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, a.tenantKey, a.agentKey, b.tenantKey, 'kiln_tenant_key_00000000000000000000000000_' + '0'.repeat(64), 'garbage'];
  });
  afterAll(async () => {
    await t.close();
    rmSync(artifactsDir, { recursive: true, force: true });
  });

  it('never answers 5xx or crashes', async () => {
    const templates = [
      '/v1/tenants', '/v1/tenants/{id}', '/v1/tenants/{id}/keys', '/v1/keys/{id}', '/v1/agents', '/v1/agents/{id}',
      '/v1/agents/{id}/keys', '/v1/policies', '/v1/policies/{id}', '/v1/policies/{id}/versions', '/v1/audit-events',
      '/v1/audit-events/verify', '/v1/languages', '/healthz', '/readyz', '/v1/{id}', '/{id}',
      '/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/cancel', '/v1/jobs/{id}/events', '/v1/artifacts',
      '/v1/artifacts/{id}', '/v1/artifacts/{id}/content', '/v1/runners', '/v1/runners/{id}',
      '/v1/runners/{id}/drain', '/v1/sandboxes', '/v1/runner/register', '/v1/runner/heartbeat',
      '/v1/runner/lease', '/v1/runner/leases/{id}/events', '/v1/runner/leases/{id}/blobs',
      '/v1/runner/leases/{id}/complete',
    ];
    const jsonValue = fc.jsonValue({ maxDepth: 4 });
    const bodies = fc.oneof(
      fc.constant(undefined),
      jsonValue,
      fc.record({ name: fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 20 }), jsonValue) }, { requiredKeys: [] }),
      fc.record({ status: fc.oneof(fc.constantFrom('active', 'suspended', 'disabled'), jsonValue) }),
      fc.record({ ruleset: jsonValue, expected_version: fc.oneof(fc.integer(), jsonValue) }),
      fc.string({ maxLength: 200 }).map((s) => ({ raw: s })),
      fc.record(
        {
          language: fc.oneof(fc.constantFrom('python', 'bash', 'cobol', ''), jsonValue),
          code: fc.oneof(fc.string({ maxLength: 50 }), jsonValue),
          files: jsonValue,
          limits: fc.oneof(fc.record({ memory_bytes: fc.integer(), pids: fc.integer() }, { requiredKeys: [] }), jsonValue),
          zone: jsonValue,
          policy_id: fc.constantFrom(...['pol_00000000000000000000000000', 'x']),
        },
        { requiredKeys: [] },
      ),
      fc.record(
        {
          runner_id: fc.oneof(fc.string({ maxLength: 30 }), jsonValue),
          attempt: fc.oneof(fc.integer(), jsonValue),
          free_slots: fc.oneof(fc.integer({ min: -2, max: 8 }), jsonValue),
          wait_ms: fc.oneof(fc.integer({ min: -1, max: 50 }), jsonValue),
          leases: jsonValue,
          events: jsonValue,
          name: fc.string({ maxLength: 20 }),
          zone: fc.string({ maxLength: 10 }),
          capacity: fc.oneof(fc.integer({ min: -1, max: 8 }), jsonValue),
          languages: jsonValue,
        },
        { requiredKeys: [] },
      ),
    );
    const query = fc.dictionary(
      fc.constantFrom('limit', 'cursor', 'actor_id', 'since', 'until', 'outcome', 'tenant_id', 'junk',
        'wait', 'timeout_ms', 'attempt', 'owner_type', 'owner_id', 'job_id', 'runner_id', 'status'),
      fc.oneof(
        fc.string({ maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 12 }),
        fc.integer().map(String),
        fc.constantFrom('none', '-1', '1e9', 'eyJhZnRlciI6MX0', 'a\u0000b'),
      ),
    );
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
      template: fc.constantFrom(...templates),
      id: fc.oneof(fc.constantFrom(...ids), fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 12 })),
      query,
      body: bodies,
      key: fc.oneof(fc.constant(undefined), fc.constantFrom(...keys), fc.string({ maxLength: 80 })),
      contentType: fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/json; charset=utf-8', 'multipart/form-data', 'application/octet-stream'),
    });

    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const url = r.template.replace('{id}', encodeURIComponent(r.id));
        const headers: Record<string, string> = {};
        if (r.key !== undefined) headers.authorization = /^[\x20-\x7e]*$/.test(r.key) ? `Bearer ${r.key}` : 'Bearer x';
        let payload: string | undefined;
        if (r.body !== undefined) {
          payload = typeof r.body === 'object' && r.body !== null && 'raw' in r.body ? String(r.body.raw) : JSON.stringify(r.body);
          if (r.contentType) headers['content-type'] = r.contentType;
        }
        const search = new URLSearchParams(r.query).toString();
        const res = await t.app.inject({
          method: r.method as 'GET',
          url: search ? `${url}?${search}` : url,
          headers,
          ...(payload === undefined ? {} : { payload }),
        });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, `${r.method} ${url}`).toBeLessThan(500);
        if (res.statusCode >= 400 && r.method !== 'HEAD') {
          expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
          const problem = res.json();
          expect(problem.code).toMatch(/^[A-Z_]+$/);
          expect(problem.status).toBe(res.statusCode);
        }
      }),
      { seed: 20261127, numRuns: RUNS[kind]!, endOnFailure: true },
    );
    // The generator reached past the front door: successes, refusals and validation errors all occurred.
    for (const status of [200, 400, 401, 403, 404]) expect(statuses.get(status) ?? 0, `status ${status}`).toBeGreaterThan(0);
    // Still healthy and still consistent afterwards.
    expect((await t.call('GET', '/readyz')).statusCode).toBe(200);
    const verify = (await t.call('GET', '/v1/audit-events/verify?tenant_id=none', TEST_ADMIN_KEY)).json();
    expect(verify.ok).toBe(true);
  });
});
