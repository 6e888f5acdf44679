import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, type TestApp } from './testing.js';

describe.each(DB_KINDS)('finding keys (%s)', (kind) => {
  let t: TestApp;
  let acme: Awaited<ReturnType<typeof seedTenant>>;
  let globex: Awaited<ReturnType<typeof seedTenant>>;

  beforeAll(async () => {
    t = await openTestApp(kind);
    acme = await seedTenant(t, 'acme');
    globex = await seedTenant(t, 'globex');
  });
  afterAll(() => t.close());

  it('lists a tenant\'s keys and its agents\' with prefix and times, never a secret or hash', async () => {
    const res = await t.call('GET', '/v1/keys', acme.tenantKey);
    expect(res.statusCode).toBe(200);
    const ids = res.json().items.map((k: { id: string }) => k.id).sort();
    expect(ids).toEqual([acme.tenantKeyId, acme.agentKeyId].sort());
    for (const key of res.json().items) {
      expect(Object.keys(key).sort()).toEqual(['agent_id', 'created_at', 'id', 'kind', 'last_used_at', 'prefix', 'revoked_at', 'tenant_id']);
      expect(key.prefix).toBe(`kiln_${key.kind}_${key.id}_`);
    }
    expect(res.body).not.toContain(acme.tenantKey);
    expect(res.body).not.toContain(acme.agentKey);
    expect(res.body).not.toContain(globex.tenantKeyId);
    const agentKey = res.json().items.find((k: { id: string }) => k.id === acme.agentKeyId);
    expect(agentKey.agent_id).toBe(acme.agent.id);
  });

  it('records last use at most once a minute per key', async () => {
    const key = async () => (await t.call('GET', '/v1/keys', acme.tenantKey)).json().items.find((k: { id: string }) => k.id === acme.agentKeyId);
    const before = (await key()).last_used_at;
    await t.call('GET', '/v1/languages', acme.agentKey);
    const first = (await key()).last_used_at;
    expect(first).not.toBeNull();
    expect(first).not.toBe(before);
    t.clock.advance(30_000);
    await t.call('GET', '/v1/languages', acme.agentKey);
    expect((await key()).last_used_at).toBe(first);
    t.clock.advance(31_000);
    await t.call('GET', '/v1/languages', acme.agentKey);
    expect((await key()).last_used_at > first).toBe(true);
  });

  it('lists one agent\'s keys, shows revocation, pages, and refuses another tenant\'s agent', async () => {
    const extra = (await t.call('POST', `/v1/agents/${acme.agent.id}/keys`, acme.tenantKey)).json();
    await t.call('DELETE', `/v1/keys/${extra.id}`, acme.tenantKey);
    const page1 = await t.call('GET', `/v1/agents/${acme.agent.id}/keys?limit=1`, acme.tenantKey);
    expect(page1.statusCode).toBe(200);
    expect(page1.json().items).toHaveLength(1);
    const page2 = (await t.call('GET', `/v1/agents/${acme.agent.id}/keys?limit=1&cursor=${page1.json().next_cursor}`, acme.tenantKey)).json();
    const all = [...page1.json().items, ...page2.items];
    expect(all.map((k) => k.id)).toEqual([acme.agentKeyId, extra.id]);
    expect(all[1].revoked_at).not.toBeNull();
    expect((await t.call('GET', `/v1/agents/${acme.agent.id}/keys`, globex.tenantKey)).statusCode).toBe(404);
    expect((await t.call('GET', '/v1/keys', acme.agentKey)).statusCode).toBe(403);
  });

  it('lets the operator list all keys, or one tenant\'s; a tenant may not ask for another', async () => {
    const all = (await t.call('GET', '/v1/keys?limit=200', TEST_ADMIN_KEY)).json().items.map((k: { id: string }) => k.id);
    expect(all).toEqual(expect.arrayContaining([acme.tenantKeyId, globex.tenantKeyId, globex.agentKeyId]));
    const one = (await t.call('GET', `/v1/keys?tenant_id=${globex.tenant.id}`, TEST_ADMIN_KEY)).json().items;
    expect(one.every((k: { tenant_id: string }) => k.tenant_id === globex.tenant.id)).toBe(true);
    expect((await t.call('GET', `/v1/keys?tenant_id=${globex.tenant.id}`, acme.tenantKey)).statusCode).toBe(403);
    expect((await t.call('GET', `/v1/agents/${globex.agent.id}/keys`, TEST_ADMIN_KEY)).json().items).toHaveLength(1);
  });
});
