import { newId, toRfc3339 } from '@kiln/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../../store/testing.js';
import { createAgent } from '../agents.js';
import { createAgentKey, createTenantKey, revokeKey } from '../keys.js';
import { expectKilnError, openJobBed, type JobBed } from '../job-testing.js';
import { MAX_CACHED_GRANTS, GrantCache } from './grant-cache.js';
import { ServiceHosting } from './hosting.js';
import { grantProxy, proxyTargetOf } from './proxy-access.js';
import { createServiceToken, revokeToken, tokenOpens } from './tokens.js';

const hosting = new ServiceHosting({ publicUrl: 'http://kiln.test:8080', domain: 'svc.example.com' });
const secrets = { adminKey: 'kiln_admin_not_used_here' };

describe('proxyTargetOf: which requests are proxied traffic, and what the sandbox sees', () => {
  it('reads the path form, the Host form (both spellings) and session ports; takes kiln_token out of the query alone', () => {
    const byPath = proxyTargetOf('/v1/services/svc_01abc/proxy/a/b?x=1&kiln_token=kst_t%2Bk&y=%20', 'kiln.test', hosting)!;
    expect(byPath).toMatchObject({
      scope: { owner_type: 'service', owner_id: 'svc_01abc' },
      upstreamPath: '/a/b?x=1&y=%20',
      cookiePath: '/v1/services/svc_01abc/proxy',
      queryToken: 'kst_t+k',
    });
    expect(proxyTargetOf('/v1/services/svc_01abc/proxy', undefined, hosting)!.upstreamPath).toBe('/');
    expect(proxyTargetOf('/v1/services/svc_01abc/proxyx', undefined, hosting)).toBeUndefined();
    expect(proxyTargetOf('/v1/services/svc_01abc', undefined, hosting)).toBeUndefined();
    for (const host of ['svc_01abc.svc.example.com', 'SVC-01abc.svc.example.com:8080']) {
      expect(proxyTargetOf('/index.html', host, hosting)).toMatchObject({ scope: { owner_id: 'svc_01abc' }, upstreamPath: '/index.html', cookiePath: '/' });
    }
    expect(proxyTargetOf('/', '8000-ses_01xyz.svc.example.com', hosting)!.scope).toEqual({ owner_type: 'session', owner_id: 'ses_01xyz', port: 8000 });
    expect(proxyTargetOf('/v1/sessions/ses_01xyz/ports/3000/proxy/x', 'kiln.test', hosting)).toMatchObject({
      scope: { owner_type: 'session', owner_id: 'ses_01xyz', port: 3000 },
      upstreamPath: '/x',
    });
    // Another name under the domain, or a look-alike domain, is not a service.
    expect(proxyTargetOf('/', 'www.svc.example.com', hosting)).toBeUndefined();
    expect(proxyTargetOf('/v1/jobs', 'svc_01abc.svc.example.com.evil.test', hosting)).toBeUndefined();
  });
});

describe.each(DB_KINDS)('service tokens and the proxy grant on %s', (kind) => {
  let bed: JobBed;
  beforeAll(async () => {
    bed = await openJobBed(kind);
  });
  afterAll(() => bed.close());

  /** A running service row on a registered runner, as createService leaves it once ready. */
  async function runningService(tenantId: string, policyId: string, runnerId: string, options: { public?: boolean; agentId?: string | null } = {}) {
    const nowIso = toRfc3339(bed.clock.nowMs());
    const id = newId('service', bed.clock.nowMs());
    await bed.store.db
      .insertInto('services')
      .values({
        id, tenant_id: tenantId, agent_id: options.agentId ?? null, policy_id: policyId, policy_version: 1, status: 'running', created_at: nowIso,
        started_at: nowIso, stopped_at: null, proxy_url: hosting.proxyUrl(id), port: 8000, runner_id: runnerId, spec: '{}', reason: null,
        sandbox_id: null, expires_at: toRfc3339(bed.clock.nowMs() + 3600_000), last_activity_at: nowIso, restarts: 0, zone: null, public: options.public ? 1 : 0, log_tail: null,
      })
      .execute();
    return id;
  }

  it('a token opens its own service and port only; expired, revoked, another tenant and no credential are refused; credentials are stripped', async () => {
    const acme = await bed.newTenant('acme-proxy');
    const rival = await bed.newTenant('rival-proxy');
    const runner = await bed.runner('proxy-node');
    const mine = await runningService(acme.tenantId, acme.policyId, runner);
    const sibling = await runningService(acme.tenantId, acme.policyId, runner);
    const open = await runningService(acme.tenantId, acme.policyId, runner, { public: true });
    const token = await createServiceToken(bed.deps, hosting, acme.admin, mine, 60);
    expect(token.url).toBe(`http://kiln.test:8080/v1/services/${mine}/proxy/?kiln_token=${encodeURIComponent(token.token)}`);
    const now = bed.clock.nowMs();
    const scope = { owner_type: 'service' as const, owner_id: mine, port: 8000 };
    expect(await tokenOpens(bed.store, token.token, scope, now)).toBe(true);
    expect(await tokenOpens(bed.store, token.token, { ...scope, owner_id: sibling }, now)).toBe(false);
    expect(await tokenOpens(bed.store, token.token, { ...scope, port: 8001 }, now)).toBe(false);
    expect(await tokenOpens(bed.store, token.token, { ...scope, owner_type: 'session' }, now)).toBe(false);
    expect(await tokenOpens(bed.store, `${token.token}x`, scope, now)).toBe(false);
    expect(await tokenOpens(bed.store, 'kst_'.padEnd(4096, 'a'), scope, now)).toBe(false);
    expect(await tokenOpens(bed.store, token.token, scope, now + 61_000)).toBe(false);

    // The grant: the token header passes and is stripped with the token cookie; other cookies stay.
    const headers: Record<string, string> = { 'x-kiln-service-token': token.token, cookie: `a=1; kiln_service_token=${token.token}; b=2`, authorization: 'Basic app' };
    const grant = await grantProxy(bed.deps, secrets, hosting, proxyTargetOf(`/v1/services/${mine}/proxy/p?q=1`, 'kiln.test', hosting)!, headers);
    expect(grant.runnerPath).toBe(`/v1/services/${mine}/proxy/p?q=1`);
    expect(grant.runner.id).toBe(runner);
    expect(headers).toEqual({ cookie: 'a=1; b=2', authorization: 'Basic app' });
    // By cookie alone, through the Host route.
    await grantProxy(bed.deps, secrets, hosting, proxyTargetOf('/', `${mine}.svc.example.com`, hosting)!, { cookie: `kiln_service_token=${token.token}` });

    const target = (id: string) => proxyTargetOf(`/v1/services/${id}/proxy/`, 'kiln.test', hosting)!;
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(sibling), { 'x-kiln-service-token': token.token }), 'UNAUTHORIZED');
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(mine), {}), 'UNAUTHORIZED');
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target('svc_nosuchservice'), {}), 'NOT_FOUND');
    // A public service needs nothing; a wrong token is still refused there.
    expect((await grantProxy(bed.deps, secrets, hosting, target(open), {})).runnerPath).toBe(`/v1/services/${open}/proxy/`);
    // Another tenant cannot mint a token for it (404, as if it did not exist).
    await expectKilnError(createServiceToken(bed.deps, hosting, rival.admin, mine, 60), 'NOT_FOUND');
    // Revoked: refused at once; the revocation is audited.
    await revokeToken(bed.deps, hosting, acme.admin, 'service', mine, token.id);
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(mine), { 'x-kiln-service-token': token.token }), 'UNAUTHORIZED');
    const actions = await bed.store.db.selectFrom('audit_events').select('action').where('resource_id', '=', mine).execute();
    expect(actions.map((a) => a.action)).toEqual(['service.token.create', 'service.token.revoke']);
    // An ended service opens to nobody, token or not.
    await bed.store.db.updateTable('services').set({ status: 'stopped' }).where('id', '=', sibling).execute();
    const late = await bed.store.db.selectFrom('services').select('status').where('id', '=', sibling).executeTakeFirstOrThrow();
    expect(late.status).toBe('stopped');
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(sibling), {}), 'NOT_FOUND');
  });

  it("keys: the tenant's opens every service of it, an agent's only its own, another tenant's none (404); the key is stripped", async () => {
    const acme = await bed.newTenant('acme-keys');
    const rival = await bed.newTenant('rival-keys');
    const runner = await bed.runner('keys-node');
    const other = await createAgent(bed.deps, acme.admin, { name: 'other-agent', type: 'assistant' });
    const agentsOwn = await runningService(acme.tenantId, acme.policyId, runner, { agentId: acme.agentId });
    const othersOwn = await runningService(acme.tenantId, acme.policyId, runner, { agentId: other.id });
    const bearer = async (k: Promise<{ key?: string | undefined }>) => ({ authorization: `Bearer ${(await k).key!}` });
    const tenantKey = await bearer(createTenantKey(bed.deps, { kind: 'operator' }, acme.tenantId));
    const agentKey = await bearer(createAgentKey(bed.deps, acme.admin, acme.agentId));
    const rivalKey = await bearer(createTenantKey(bed.deps, { kind: 'operator' }, rival.tenantId));
    const target = (id: string) => proxyTargetOf(`/v1/services/${id}/proxy/`, 'kiln.test', hosting)!;
    for (const id of [agentsOwn, othersOwn]) {
      const headers = { ...tenantKey };
      await grantProxy(bed.deps, secrets, hosting, target(id), headers);
      expect(headers).toEqual({});
    }
    await grantProxy(bed.deps, secrets, hosting, target(agentsOwn), { ...agentKey });
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(othersOwn), { ...agentKey }), 'NOT_FOUND');
    await expectKilnError(grantProxy(bed.deps, secrets, hosting, target(agentsOwn), { ...rivalKey }), 'NOT_FOUND');
  });

  it('allowed decisions are reused for at most the access cache while: a revoked key is refused once it passes, a revoked token or a stopped service at once', async () => {
    const acme = await bed.newTenant('acme-cache');
    const runner = await bed.runner('cache-node');
    const svc = await runningService(acme.tenantId, acme.policyId, runner);
    const cached = new ServiceHosting({ publicUrl: 'http://kiln.test:8080', accessCacheMs: 1000 });
    const key = await createTenantKey(bed.deps, { kind: 'operator' }, acme.tenantId);
    const target = proxyTargetOf(`/v1/services/${svc}/proxy/`, 'kiln.test', cached)!;
    const withKey = () => ({ authorization: `Bearer ${key.key!}` });
    await grantProxy(bed.deps, secrets, cached, target, withKey());
    expect(cached.grants.size).toBe(1);

    // Revoked on another replica (the store alone): this replica still lets it pass within its while, never after.
    await revokeKey(bed.deps, { kind: 'operator' }, key.id);
    bed.clock.advance(999);
    await grantProxy(bed.deps, secrets, cached, target, withKey());
    bed.clock.advance(1);
    await expectKilnError(grantProxy(bed.deps, secrets, cached, target, withKey()), 'UNAUTHORIZED');
    // A refusal is never remembered: it is checked again (and refused again) each time.
    await expectKilnError(grantProxy(bed.deps, secrets, cached, target, withKey()), 'UNAUTHORIZED');

    // A token: revoked through this replica, refused at once; an entry never outlives its token's expiry.
    const token = await createServiceToken(bed.deps, cached, acme.admin, svc, 2);
    const withToken = () => ({ 'x-kiln-service-token': token.token });
    await grantProxy(bed.deps, secrets, cached, target, withToken());
    bed.clock.advance(1500);
    await grantProxy(bed.deps, secrets, cached, target, withToken());
    bed.clock.advance(600); // past the token's expiry, though within the while of the entry made at 1.5 s
    await expectKilnError(grantProxy(bed.deps, secrets, cached, target, withToken()), 'UNAUTHORIZED');
    const second = await createServiceToken(bed.deps, cached, acme.admin, svc, 60);
    await grantProxy(bed.deps, secrets, cached, target, { 'x-kiln-service-token': second.token });
    await revokeToken(bed.deps, cached, acme.admin, 'service', svc, second.id);
    await expectKilnError(grantProxy(bed.deps, secrets, cached, target, { 'x-kiln-service-token': second.token }), 'UNAUTHORIZED');

    // 0 turns the cache off: every request is decided against the store.
    const uncached = new ServiceHosting({ accessCacheMs: 0 });
    const third = await createServiceToken(bed.deps, uncached, acme.admin, svc, 60);
    await grantProxy(bed.deps, secrets, uncached, target, { 'x-kiln-service-token': third.token });
    expect(uncached.grants.size).toBe(0);
  });
});

describe('GrantCache', () => {
  it('is bounded (the oldest decisions go first) and keeps credentials only as digests', () => {
    const cache = new GrantCache(1000);
    const runner = { id: 'run_1', address: 'http://127.0.0.1:1', signing_key: 'k' };
    const scope = { owner_type: 'service' as const, owner_id: 'svc_a', port: 0 };
    const first = GrantCache.keyOf(scope, 'token:kst_first');
    expect(first).not.toContain('kst_first');
    cache.remember(first, 'svc_a', { runner, port: 8000 }, 0);
    for (let i = 0; i < MAX_CACHED_GRANTS; i++) cache.remember(GrantCache.keyOf(scope, `token:${i}`), 'svc_a', { runner, port: 8000 }, 0);
    expect(cache.size).toBe(MAX_CACHED_GRANTS);
    expect(cache.get(first, 1)).toBeUndefined();
    cache.forgetOwner('svc_a');
    expect(cache.size).toBe(0);
  });
});
