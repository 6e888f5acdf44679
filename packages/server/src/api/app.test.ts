import { DEFAULT_RULESET } from '@kiln/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

describe.each(DB_KINDS)('control-plane API on %s', (kind) => {
  let t: TestApp;
  let acme: Awaited<ReturnType<typeof seedTenant>>;
  let globex: Awaited<ReturnType<typeof seedTenant>>;

  beforeAll(async () => {
    t = await openTestApp(kind, { bodyLimitBytes: 64 * 1024 });
    acme = await seedTenant(t, 'acme');
    globex = await seedTenant(t, 'globex');
  });
  afterAll(() => t.close());

  async function count(table: 'tenants' | 'agents' | 'policies' | 'api_keys' | 'audit_events'): Promise<number> {
    return (await t.db.store.db.selectFrom(table).select('id').execute()).length;
  }

  describe('operations', () => {
    it('answers health, readiness, metrics, OpenAPI and the docs page without a key', async () => {
      expect((await t.call('GET', '/healthz')).json()).toEqual({ ok: true });
      expect((await t.call('GET', '/readyz')).json()).toEqual({ ok: true });
      const metrics = await t.call('GET', '/metrics');
      expect(metrics.headers['content-type']).toMatch(/text\/plain/);
      expect(metrics.body).toMatch(/kiln_http_requests_total\{method="POST",route="\/v1\/tenants",status="201"\} \d+/);
      expect(metrics.body).toContain('kiln_http_request_duration_seconds_bucket');
      const doc = (await t.call('GET', '/openapi.json')).json();
      expect(doc.openapi).toBe('3.1.0');
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining(['/v1/tenants', '/v1/tenants/{id}', '/v1/policies/{id}/versions', '/v1/audit-events/verify']),
      );
      const publish = doc.paths['/v1/policies/{id}'].put;
      const ref = publish.requestBody.content['application/json'].schema.$ref as string;
      expect(doc.components.schemas[ref.split('/').pop()!].required).toEqual(['ruleset', 'expected_version']);
      const docs = await t.call('GET', '/docs/');
      expect(docs.statusCode).toBe(200);
      expect(docs.body).toContain('swagger');
    });

    it('lists no languages while no runner is registered', async () => {
      expect((await t.call('GET', '/v1/languages', acme.agentKey)).json()).toEqual({ items: [] });
      expect((await t.call('GET', '/v1/languages')).statusCode).toBe(401);
    });
  });

  describe('tenants and keys', () => {
    it('creates a tenant with a default policy at version 1', async () => {
      expect(acme.tenant).toMatchObject({ name: 'acme', status: 'active' });
      expect(acme.tenant.id).toMatch(/^ten_/);
      expect(acme.tenantKey).toMatch(/^kiln_tenant_key_[0-9a-z]{26}_[0-9a-f]{64}$/);
      const policies = (await t.call('GET', '/v1/policies', acme.tenantKey)).json();
      expect(policies.items).toHaveLength(1);
      expect(policies.items[0]).toMatchObject({ name: 'default', version: 1, ruleset: DEFAULT_RULESET });
    });

    it('stores keys only hashed and shows the secret once', async () => {
      const row = await t.db.store.db.selectFrom('api_keys').selectAll().where('id', '=', acme.tenantKeyId).executeTakeFirstOrThrow();
      const secret = acme.tenantKey.split('_').pop()!;
      expect(JSON.stringify(row)).not.toContain(secret);
      expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
      const tenant = (await t.call('GET', `/v1/tenants/${acme.tenant.id}`, TEST_ADMIN_KEY)).json();
      expect(JSON.stringify(tenant)).not.toContain(secret);
    });

    it('pages tenants with an opaque cursor and refuses a garbage cursor', async () => {
      const first = (await t.call('GET', '/v1/tenants?limit=1', TEST_ADMIN_KEY)).json();
      expect(first.items).toHaveLength(1);
      expect(first.next_cursor).toEqual(expect.any(String));
      const second = (await t.call('GET', `/v1/tenants?limit=1&cursor=${first.next_cursor}`, TEST_ADMIN_KEY)).json();
      expect(second.items[0].id).not.toBe(first.items[0].id);
      const all = (await t.call('GET', '/v1/tenants?limit=200', TEST_ADMIN_KEY)).json();
      expect(all.next_cursor).toBeNull();
      for (const cursor of ['garbage!', 'eyJhZnRlciI6MX0', 'bm90IGpzb24', 'eyJhZnRlciI6Ii4uLyJ9']) {
        const res = await t.call('GET', `/v1/tenants?cursor=${cursor}`, TEST_ADMIN_KEY);
        expect(res.statusCode, cursor).toBe(400);
        expect(res.json().code).toBe('INVALID_CURSOR');
      }
      const tooMany = await t.call('GET', '/v1/tenants?limit=100000', TEST_ADMIN_KEY);
      expect(tooMany.statusCode).toBe(400);
      expect(tooMany.json().field).toBe('query.limit');
    });

    it('refuses missing, malformed, unknown and revoked keys with 401', async () => {
      const revoked = (await t.call('POST', `/v1/tenants/${acme.tenant.id}/keys`, TEST_ADMIN_KEY)).json();
      expect((await t.call('GET', '/v1/agents', revoked.key)).statusCode).toBe(200);
      const revoke = await t.call('DELETE', `/v1/keys/${revoked.id}`, TEST_ADMIN_KEY);
      expect(revoke.statusCode).toBe(200);
      expect(revoke.json().revoked_at).toEqual(expect.any(String));
      expect((await t.call('DELETE', `/v1/keys/${revoked.id}`, TEST_ADMIN_KEY)).json().code).toBe('INVALID_TRANSITION');

      const forged = acme.tenantKey.slice(0, -4) + (acme.tenantKey.endsWith('0000') ? '1111' : '0000');
      for (const key of [undefined, 'nope', forged, revoked.key, TEST_ADMIN_KEY + 'x']) {
        const res = await t.call('GET', '/v1/agents', key);
        expect(res.statusCode, String(key)).toBe(401);
        expect(res.json().code).toBe('UNAUTHORIZED');
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      }
      const basic = await t.app.inject({ method: 'GET', url: '/v1/agents', headers: { authorization: 'Basic abc' } });
      expect(basic.statusCode).toBe(401);
    });

    it('keeps each audience to its routes', async () => {
      expect((await t.call('GET', '/v1/tenants', acme.tenantKey)).json().code).toBe('FORBIDDEN');
      expect((await t.call('POST', '/v1/tenants', acme.agentKey, { name: 'x' })).json().code).toBe('FORBIDDEN');
      expect((await t.call('POST', '/v1/agents', acme.agentKey, { name: 'x' })).json().code).toBe('FORBIDDEN');
      expect((await t.call('GET', '/v1/agents', TEST_ADMIN_KEY)).json().code).toBe('FORBIDDEN');
      const runner = await t.call('GET', '/v1/agents', TEST_RUNNER_TOKEN);
      expect(runner.statusCode).toBe(403);
      expect(runner.json().detail).toMatch(/runner/);
      expect((await t.call('GET', '/v1/tenants', TEST_RUNNER_TOKEN)).statusCode).toBe(403);
    });

    it('answers 404 for another tenant\'s resources, reads and writes alike', async () => {
      const theirs = [
        ['GET', `/v1/agents/${globex.agent.id}`],
        ['PATCH', `/v1/agents/${globex.agent.id}`, { status: 'disabled' }],
        ['POST', `/v1/agents/${globex.agent.id}/keys`],
        ['DELETE', `/v1/keys/${globex.agentKeyId}`],
      ] as const;
      for (const [method, url, body] of theirs) {
        const res = await t.call(method, url, acme.tenantKey, body);
        const missing = await t.call(method, url.replace(/(agt|key)_[0-9a-z]{26}/, '$1_00000000000000000000000000'), acme.tenantKey, body);
        expect(res.statusCode, `${method} ${url}`).toBe(404);
        expect(res.json().code).toBe('NOT_FOUND');
        expect(missing.statusCode).toBe(404);
      }
      const globexPolicy = (await t.call('GET', '/v1/policies', globex.tenantKey)).json().items[0];
      for (const [method, body] of [['GET'], ['PUT', { ruleset: DEFAULT_RULESET, expected_version: 1 }]] as const) {
        expect((await t.call(method, `/v1/policies/${globexPolicy.id}`, acme.tenantKey, body)).statusCode).toBe(404);
      }
      expect((await t.call('GET', `/v1/policies/${globexPolicy.id}/versions`, acme.tenantKey)).statusCode).toBe(404);
      // Nothing of globex changed.
      expect((await t.call('GET', `/v1/agents/${globex.agent.id}`, globex.tenantKey)).json().status).toBe('active');
      expect((await t.call('GET', `/v1/policies/${globexPolicy.id}`, globex.tenantKey)).json().version).toBe(1);
    });
  });

  describe('agents', () => {
    it('disables an agent: its key answers 403 AGENT_DISABLED until enabled again', async () => {
      const agent = (await t.call('POST', '/v1/agents', acme.tenantKey, { name: 'flaky', type: 'planner' })).json();
      expect(agent).toMatchObject({ name: 'flaky', type: 'planner', status: 'active', tenant_id: acme.tenant.id });
      const key = (await t.call('POST', `/v1/agents/${agent.id}/keys`, acme.tenantKey)).json().key;
      expect((await t.call('GET', '/v1/policies', key)).statusCode).toBe(200);
      expect((await t.call('PATCH', `/v1/agents/${agent.id}`, acme.tenantKey, { status: 'disabled' })).json().status).toBe(
        'disabled',
      );
      const refused = await t.call('GET', '/v1/policies', key);
      expect(refused.statusCode).toBe(403);
      expect(refused.json().code).toBe('AGENT_DISABLED');
      const again = await t.call('PATCH', `/v1/agents/${agent.id}`, acme.tenantKey, { status: 'disabled' });
      expect(again.json().code).toBe('INVALID_TRANSITION');
      expect((await t.call('POST', `/v1/agents/${agent.id}/keys`, acme.tenantKey)).json().code).toBe('AGENT_DISABLED');
      await t.call('PATCH', `/v1/agents/${agent.id}`, acme.tenantKey, { status: 'active' });
      expect((await t.call('GET', '/v1/policies', key)).statusCode).toBe(200);
    });

    it('lists agents of the caller\'s tenant only', async () => {
      const list = (await t.call('GET', '/v1/agents', globex.tenantKey)).json();
      expect(list.items.map((a: { id: string }) => a.id)).toEqual([globex.agent.id]);
    });
  });

  describe('policies', () => {
    it('creates version 1, publishes 2 and 3, refuses a stale version, keeps the history', async () => {
      const created = await t.call('POST', '/v1/policies', acme.tenantKey, { name: 'strict', ruleset: DEFAULT_RULESET });
      expect(created.statusCode).toBe(201);
      const policy = created.json();
      expect(policy.version).toBe(1);
      const tighter = { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, pids: 8 } };
      const v2 = await t.call('PUT', `/v1/policies/${policy.id}`, acme.tenantKey, { ruleset: tighter, expected_version: 1 });
      expect(v2.json()).toMatchObject({ version: 2, ruleset: tighter });
      const stale = await t.call('PUT', `/v1/policies/${policy.id}`, acme.tenantKey, {
        ruleset: DEFAULT_RULESET,
        expected_version: 1,
      });
      expect(stale.statusCode).toBe(409);
      expect(stale.json()).toMatchObject({ code: 'CONFLICT', current_version: 2, field: 'body.expected_version' });
      await t.call('PUT', `/v1/policies/${policy.id}`, acme.tenantKey, { ruleset: DEFAULT_RULESET, expected_version: 2 });
      const history = (await t.call('GET', `/v1/policies/${policy.id}/versions?limit=2`, acme.tenantKey)).json();
      expect(history.items.map((v: { version: number }) => v.version)).toEqual([1, 2]);
      expect(history.items[1].ruleset.limits.pids).toBe(8);
      const rest = (await t.call('GET', `/v1/policies/${policy.id}/versions?cursor=${history.next_cursor}`, acme.tenantKey)).json();
      expect(rest.items.map((v: { version: number }) => v.version)).toEqual([3]);
      expect((await t.call('POST', '/v1/policies', acme.tenantKey, { name: 'strict' })).json().code).toBe('CONFLICT');
    });

    it('lets exactly one of six concurrent publishes win', async () => {
      const policy = (await t.call('POST', '/v1/policies', acme.tenantKey, { name: 'racy' })).json();
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          t.call('PUT', `/v1/policies/${policy.id}`, acme.tenantKey, {
            ruleset: { ...DEFAULT_RULESET, concurrency: { max_running_jobs: i + 1 } },
            expected_version: 1,
          }),
        ),
      );
      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409, 409, 409, 409, 409]);
      const history = (await t.call('GET', `/v1/policies/${policy.id}/versions`, acme.tenantKey)).json();
      expect(history.items.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    });

    it('lets agents read policies but not write them', async () => {
      expect((await t.call('GET', '/v1/policies', acme.agentKey)).statusCode).toBe(200);
      expect((await t.call('POST', '/v1/policies', acme.agentKey, { name: 'mine' })).json().code).toBe('FORBIDDEN');
    });
  });

  describe('bad input', () => {
    it('answers problem+json with the field path and changes nothing', async () => {
      const before = await count('tenants');
      const cases: Array<[string, string, unknown, number, string, string?]> = [
        ['POST', '/v1/tenants', { name: 42 }, 400, 'VALIDATION_FAILED', 'body.name'],
        ['POST', '/v1/tenants', { name: 'x', extra: true }, 400, 'VALIDATION_FAILED', 'body'],
        ['POST', '/v1/tenants', {}, 400, 'VALIDATION_FAILED', 'body.name'],
        ['POST', '/v1/tenants', [], 400, 'VALIDATION_FAILED', 'body'],
        ['PATCH', `/v1/tenants/${acme.tenant.id}`, { status: 'deleted' }, 400, 'VALIDATION_FAILED', 'body.status'],
        ['GET', '/v1/tenants/ten_00000000000000000000000000', undefined, 404, 'NOT_FOUND'],
        // NUL and other control characters: PostgreSQL refuses them, so the schemas refuse them first.
        ['POST', '/v1/tenants', { name: 'a\u0000b' }, 400, 'VALIDATION_FAILED', 'body.name'],
        ['GET', '/v1/tenants/ten%00x', undefined, 400, 'VALIDATION_FAILED', 'params.id'],
        ['GET', '/v1/audit-events?actor_id=a%00b', undefined, 400, 'VALIDATION_FAILED', 'query.actor_id'],
        ['GET', '/v1/no-such-route', undefined, 404, 'NOT_FOUND'],
      ];
      for (const [method, url, body, status, code, field] of cases) {
        const res = await t.call(method, url, TEST_ADMIN_KEY, body);
        expect(res.statusCode, `${method} ${url} ${JSON.stringify(body)}`).toBe(status);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        const problem = res.json();
        expect(problem).toMatchObject({ status, code, type: expect.stringMatching(/^\/errors\/[a-z-]+$/), title: expect.any(String) });
        expect(problem.detail).toEqual(expect.any(String));
        if (field) expect(problem.field).toBe(field);
      }
      const nested = await t.call('POST', '/v1/policies', acme.tenantKey, {
        name: 'bad',
        ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, memory_bytes: -1 } },
      });
      expect(nested.json().field).toBe('body.ruleset.limits.memory_bytes');
      expect(await count('tenants')).toBe(before);
    });

    it('refuses malformed JSON, wrong media types and bodies over the limit', async () => {
      const before = await count('tenants');
      const headers = { authorization: `Bearer ${TEST_ADMIN_KEY}`, 'content-type': 'application/json' };
      const malformed = await t.app.inject({ method: 'POST', url: '/v1/tenants', headers, payload: '{"name": ' });
      expect(malformed.statusCode).toBe(400);
      expect(malformed.json().code).toBe('MALFORMED_JSON');
      const proto = await t.app.inject({ method: 'POST', url: '/v1/tenants', headers, payload: '{"__proto__": {"x": 1}, "name": "p"}' });
      expect(proto.statusCode).toBe(400);
      const xml = await t.app.inject({
        method: 'POST',
        url: '/v1/tenants',
        headers: { ...headers, 'content-type': 'application/xml' },
        payload: '<tenant/>',
      });
      expect(xml.statusCode).toBe(415);
      expect(xml.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
      const big = await t.app.inject({
        method: 'POST',
        url: '/v1/tenants',
        headers,
        payload: JSON.stringify({ name: 'x'.repeat(65 * 1024) }),
      });
      expect(big.statusCode).toBe(413);
      expect(big.json().code).toBe('PAYLOAD_TOO_LARGE');
      expect(big.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(await count('tenants')).toBe(before);
    });
  });

  describe('suspension', () => {
    it('refuses a suspended tenant\'s writes with 403 TENANT_SUSPENDED, allows its reads, and resumes', async () => {
      const victim = await seedTenant(t, 'initech');
      const suspended = await t.call('PATCH', `/v1/tenants/${victim.tenant.id}`, TEST_ADMIN_KEY, { status: 'suspended' });
      expect(suspended.json().status).toBe('suspended');
      for (const key of [victim.tenantKey, victim.agentKey]) {
        expect((await t.call('GET', '/v1/policies', key)).statusCode).toBe(200);
      }
      const writes = [
        ['POST', '/v1/agents', { name: 'new' }],
        ['POST', '/v1/policies', { name: 'new' }],
        ['POST', `/v1/agents/${victim.agent.id}/keys`, undefined],
        ['PATCH', `/v1/agents/${victim.agent.id}`, { status: 'disabled' }],
      ] as const;
      for (const [method, url, body] of writes) {
        const res = await t.call(method, url, victim.tenantKey, body);
        expect(res.statusCode, `${method} ${url}`).toBe(403);
        expect(res.json().code).toBe('TENANT_SUSPENDED');
      }
      await t.call('PATCH', `/v1/tenants/${victim.tenant.id}`, TEST_ADMIN_KEY, { status: 'active' });
      expect((await t.call('POST', '/v1/agents', victim.tenantKey, { name: 'new' })).statusCode).toBe(201);
    });
  });

  describe('audit', () => {
    it('records successes and refusals with the right actor, and filters them', async () => {
      const agentEvents = (
        await t.call('GET', `/v1/audit-events?actor_id=${acme.agent.id}&limit=200`, acme.tenantKey)
      ).json();
      expect(agentEvents.items.length).toBeGreaterThan(0);
      expect(agentEvents.items.every((e: { actor_id: string }) => e.actor_id === acme.agent.id)).toBe(true);
      // The agent's refused policy.create above.
      expect(agentEvents.items).toEqual(
        expect.arrayContaining([expect.objectContaining({ action: 'policy.create', outcome: 'denied' })]),
      );
      const publishes = (await t.call('GET', '/v1/audit-events?action=policy.publish&outcome=success', acme.tenantKey)).json();
      expect(publishes.items.length).toBeGreaterThanOrEqual(3);
      expect(publishes.items[0]).toMatchObject({ resource_type: 'policy', actor_id: acme.tenantKeyId, tenant_id: acme.tenant.id });
      const conflicts = (await t.call('GET', '/v1/audit-events?action=policy.publish&outcome=error', acme.tenantKey)).json();
      expect(conflicts.items.length).toBeGreaterThanOrEqual(6);
      expect(conflicts.items[0].details).toMatchObject({ code: 'CONFLICT', status: 409 });
      const created = (await t.call('GET', `/v1/audit-events?action=tenant.create&resource_id=${acme.tenant.id}`, acme.tenantKey)).json();
      expect(created.items).toHaveLength(1);
      expect(created.items[0].actor_id).toBe('operator');
      const future = (await t.call('GET', '/v1/audit-events?since=2999-01-01T00:00:00Z', acme.tenantKey)).json();
      expect(future.items).toEqual([]);
      const past = (await t.call('GET', '/v1/audit-events?until=2000-01-01T00:00:00Z', acme.tenantKey)).json();
      expect(past.items).toEqual([]);
      expect((await t.call('GET', '/v1/audit-events?since=yesterday', acme.tenantKey)).json().field).toBe('query.since');
      // Never a secret in the trail.
      const all = (await t.call('GET', '/v1/audit-events?limit=200', TEST_ADMIN_KEY)).body;
      expect(all).not.toContain(acme.tenantKey.split('_').pop());
      expect(all).not.toContain(TEST_ADMIN_KEY);
    });

    it('keeps tenants to their own events; the operator sees all', async () => {
      const mine = (await t.call('GET', '/v1/audit-events?limit=200', globex.tenantKey)).json();
      expect(mine.items.every((e: { tenant_id: string }) => e.tenant_id === globex.tenant.id)).toBe(true);
      expect((await t.call('GET', `/v1/audit-events?tenant_id=${acme.tenant.id}`, globex.tenantKey)).statusCode).toBe(403);
      const op = (await t.call('GET', `/v1/audit-events?tenant_id=${acme.tenant.id}&limit=1`, TEST_ADMIN_KEY)).json();
      expect(op.items[0].tenant_id).toBe(acme.tenant.id);
      expect(op.next_cursor).toEqual(expect.any(String));
    });

    it('audits refused anonymous writes in the operator chain, in aggregate', async () => {
      await t.call('POST', '/v1/tenants', undefined, { name: 'sneaky' });
      await t.app.kiln.authRefusals.flush();
      const ops = (await t.call('GET', '/v1/audit-events?tenant_id=none&actor_id=anonymous&action=auth.refused', TEST_ADMIN_KEY)).json();
      expect(ops.items).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            outcome: 'denied',
            tenant_id: null,
            resource_id: '127.0.0.0/24',
            details: expect.objectContaining({ routes: expect.objectContaining({ 'POST /v1/tenants': 1 }) }),
          }),
        ]),
      );
    });

    it('verifies every chain', async () => {
      for (const key of [acme.tenantKey, globex.tenantKey]) {
        const result = (await t.call('GET', '/v1/audit-events/verify', key)).json();
        expect(result.ok).toBe(true);
        expect(result.count).toBeGreaterThan(3);
      }
      const operatorChain = (await t.call('GET', '/v1/audit-events/verify?tenant_id=none', TEST_ADMIN_KEY)).json();
      expect(operatorChain.ok).toBe(true);
      expect(operatorChain.count).toBeGreaterThan(0);
      const acmeCount = (await t.call('GET', '/v1/audit-events/verify', acme.tenantKey)).json().count;
      const total = (await t.db.store.db.selectFrom('audit_events').select('id').where('tenant_id', '=', acme.tenant.id).execute()).length;
      expect(acmeCount).toBe(total);
    });
  });
});
