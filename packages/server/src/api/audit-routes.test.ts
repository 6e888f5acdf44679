import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_REFUSAL_EVENTS_PER_WINDOW } from '../services/auth-refusals.js';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, type TestApp } from './testing.js';

describe.each(DB_KINDS)('audit API on %s', (kind) => {
  let t: TestApp;
  let acme: Awaited<ReturnType<typeof seedTenant>>;

  beforeAll(async () => {
    t = await openTestApp(kind, { authRefusals: { windowMs: 3_600_000, maxSources: 50 } });
    acme = await seedTenant(t, 'acme');
  });
  afterAll(() => t.close());

  const auditRows = async () => (await t.db.store.db.selectFrom('audit_events').select('id').execute()).length;

  describe('who sees what', () => {
    it('shows an agent key only the events it is the actor or subject of; the tenant key sees all', async () => {
      const other = (await t.call('POST', '/v1/agents', acme.tenantKey, { name: 'other-bot' })).json();
      const otherKey = (await t.call('POST', `/v1/agents/${other.id}/keys`, acme.tenantKey)).json().key;
      // Each agent does something audited (a refused policy write), the admin acts on the other agent.
      expect((await t.call('POST', '/v1/policies', acme.agentKey, { name: 'mine' })).statusCode).toBe(403);
      expect((await t.call('POST', '/v1/policies', otherKey, { name: 'theirs' })).statusCode).toBe(403);
      await t.call('PATCH', `/v1/agents/${other.id}`, acme.tenantKey, { status: 'disabled' });
      await t.call('PATCH', `/v1/agents/${other.id}`, acme.tenantKey, { status: 'active' });

      const mine = (await t.call('GET', '/v1/audit-events?limit=200', acme.agentKey)).json().items;
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.every((e: { subject_agent_id: string }) => e.subject_agent_id === acme.agent.id)).toBe(true);
      expect(mine.some((e: { actor_id: string }) => e.actor_id === acme.agent.id)).toBe(true);
      expect(JSON.stringify(mine)).not.toContain(other.id);
      // Filters narrow within what the key may see, never widen it.
      const filtered = (await t.call('GET', `/v1/audit-events?actor_id=${acme.tenantKeyId}`, acme.agentKey)).json().items;
      expect(filtered.every((e: { subject_agent_id: string }) => e.subject_agent_id === acme.agent.id)).toBe(true);

      const theirs = (await t.call('GET', '/v1/audit-events?limit=200', otherKey)).json().items;
      expect(theirs.map((e: { action: string }) => e.action)).toEqual(
        expect.arrayContaining(['agent.create', 'key.create', 'agent.disable', 'agent.enable', 'policy.create']),
      );
      expect(JSON.stringify(theirs)).not.toContain(acme.agent.id);

      const all = JSON.stringify((await t.call('GET', '/v1/audit-events?limit=200', acme.tenantKey)).json().items);
      expect(all).toContain(acme.agent.id);
      expect(all).toContain(other.id);
      // The chain is the tenant's: its admin (or the operator) verifies it, not an agent.
      expect((await t.call('GET', '/v1/audit-events/verify', acme.agentKey)).statusCode).toBe(403);
      expect((await t.call('GET', '/v1/audit-events/verify', acme.tenantKey)).json()).toMatchObject({ ok: true, keyed_from_seq: 1 });
    });
  });

  describe('what is stored', () => {
    it('escapes control and bidi characters in request details and bounds each string', async () => {
      // A refused call's detail quotes what the caller sent (here an unknown field's name).
      const field = `x\u001b[2J\u001b]0;owned\u0007\u202etxt.exe\u2066${'y'.repeat(2000)}`;
      const refused = await t.call('POST', '/v1/agents', acme.tenantKey, { name: 'ok', [field]: 1 });
      expect(refused.statusCode).toBe(400);
      const row = await t.db.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'agent.create')
        .where('outcome', '=', 'error')
        .orderBy('id', 'desc')
        .executeTakeFirstOrThrow();
      expect(row.details).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
      const [event] = (await t.call('GET', `/v1/audit-events?action=agent.create&outcome=error&limit=1`, acme.tenantKey)).json().items;
      expect(event.details.detail).toContain('x\\u001b[2J\\u001b]0;owned\\u0007\\u202etxt.exe\\u2066yyy');
      expect(event.details.detail).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
      expect(event.details.detail.length).toBeLessThan(600);
    });
  });

  describe('requests without a valid key', () => {
    it('6,000 refused requests leave a bounded number of audit rows, with their count', async () => {
      await t.app.kiln.authRefusals.flush();
      const before = await auditRows();
      const keys = [undefined, 'garbage', 'kiln_tenant_key_00000000000000000000000000_' + '0'.repeat(64)];
      for (let i = 0; i < 6000; i++) {
        const res = await t.call(i % 2 ? 'POST' : 'GET', i % 2 ? '/v1/tenants' : '/v1/agents', keys[i % 3], { name: `n${i}` });
        expect(res.statusCode).toBe(401);
      }
      // Nothing was written per request.
      expect(await auditRows()).toBe(before);
      expect(await t.app.kiln.authRefusals.flush()).toBe(1);
      expect(await auditRows()).toBe(before + 1);
      const [event] = (await t.call('GET', '/v1/audit-events?tenant_id=none&action=auth.refused&limit=1', TEST_ADMIN_KEY)).json().items;
      expect(event).toMatchObject({
        actor_id: 'anonymous',
        resource_type: 'source',
        resource_id: '127.0.0.0/24',
        outcome: 'denied',
        details: { count: 6000, codes: { UNAUTHORIZED: 6000 }, routes: { 'POST /v1/tenants': 3000, 'GET /v1/agents': 3000 } },
      });
      const metrics = (await t.call('GET', '/metrics')).body;
      expect(metrics).toMatch(/kiln_auth_refused_total\{code="UNAUTHORIZED"\} \d+/);
      expect(Number(/kiln_auth_refused_total\{code="UNAUTHORIZED"\} (\d+)/.exec(metrics)![1])).toBeGreaterThanOrEqual(6000);
    }, 120_000);

    it('bounds the sources tracked and the events written per window, however many networks send', async () => {
      await t.app.kiln.authRefusals.flush();
      const before = await auditRows();
      // 400 networks (each a /24 or a /64), over the table's 50 sources.
      for (let i = 0; i < 400; i++) {
        const remoteAddress = i % 2 ? `10.${i >> 8}.${i & 255}.7` : `2001:db8:${i.toString(16)}::1`;
        await t.app.inject({ method: 'GET', url: '/v1/agents', remoteAddress });
      }
      const written = await t.app.kiln.authRefusals.flush();
      expect(written).toBeLessThanOrEqual(Math.min(50, AUTH_REFUSAL_EVENTS_PER_WINDOW) + 1);
      expect(await auditRows()).toBe(before + written);
      const other = (await t.call('GET', '/v1/audit-events?tenant_id=none&action=auth.refused&resource_id=other', TEST_ADMIN_KEY)).json().items[0];
      expect(other.details).toMatchObject({ count: 350, sources: 1 });
    });
  });
});
