import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_RULESET, type Service } from '@kiln/core';
import { Sandbox, type KilnClient } from '@kiln/sdk';
import WebSocket from 'ws';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

const APP = readFileSync(join(import.meta.dirname, 'support/service-app.py'), 'utf8');
const DOMAIN = 'svc.kiln.test';

/** A plain HTTP request (fetch may not set Host), answered whole. */
function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function allowServices(admin: KilnClient, services: Partial<typeof DEFAULT_RULESET.services> = {}) {
  const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
  await admin.policies.publish(policy.id, {
    ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true, max_running: 4, ...services } },
    expected_version: policy.version,
  });
}

async function startApp(client: KilnClient, extra: Record<string, unknown> = {}): Promise<Service> {
  return client.services.create({ files: [{ path: 'app.py', content: APP, encoding: 'utf8' }], command: ['python3', 'app.py', '8000'], port: 8000, ...extra });
}

function running(client: KilnClient, id: string): Promise<Service> {
  return eventually(`service ${id} to run`, async () => {
    const s = await client.services.get(id);
    if (s.status === 'terminated' || s.status === 'stopped') throw new Error(`service ended: ${JSON.stringify(s)}`);
    return s.status === 'running' ? s : undefined;
  });
}

function ended(client: KilnClient, id: string): Promise<Service> {
  return eventually(`service ${id} to end`, async () => {
    const s = await client.services.get(id);
    return s.status === 'terminated' || s.status === 'stopped' ? s : undefined;
  }, 30_000);
}

/**
 * Issue 9 (services) with the real processes: a Python server as a service reached by path and by Host
 * with a tenant key and a scoped token (header, query → cookie), refused with another service's token,
 * an expired or revoked one and none; streamed bodies, SSE and a WebSocket through the proxy; kiln's
 * credentials never reach it; a slow upstream is a 504; logs; stop. Then the lifecycle: policy refusals,
 * readiness timeout, on-failure restarts, a SIGKILLed runner; the audit verifies after all of it.
 */
describe.each<DbKind>(['sqlite', 'postgres'])('services end to end (%s)', (db) => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('proxies by path and by Host with keys and scoped tokens; SSE, WebSocket, streams; 504; logs; stop', async () => {
    kiln = new KilnSystem(db, { KILN_SERVICES_DOMAIN: DOMAIN, KILN_SERVICES_UPSTREAM_TIMEOUT_MS: '1500' });
    await kiln.startServer();
    await kiln.startRunner({ name: 'svc-runner', capacity: 2 });
    const { admin, tenant } = await kiln.newTenant();
    const tenantKey = (await kiln.operator.tenants.createKey(tenant.id)).key;
    const other = await kiln.newTenant();

    // Refused while the policy does not allow services (the default).
    await expect(startApp(admin)).rejects.toMatchObject({ status: 422, code: 'POLICY_VIOLATION' });
    await allowServices(admin);
    await expect(startApp(admin, { public: true })).rejects.toMatchObject({ status: 422, code: 'POLICY_VIOLATION' });

    const created = await startApp(admin, { env: { GREETING: 'hi' } });
    expect(created).toMatchObject({ status: 'starting', port: 8000, restart: 'never', public: false, reason: null, env: { GREETING: 'hi' } });
    expect(created.proxy_url).toBe(`${kiln.url}/v1/services/${created.id}/proxy/`);
    expect(created.runner_id).toMatch(/^run_/);
    expect(created.sandbox_id).toMatch(/^sbx_/);
    const svc = await running(admin, created.id);
    expect(svc.started_at).not.toBeNull();
    const second = await running(admin, (await startApp(admin)).id);

    // Tenant key, by path and by Host; kiln's credentials are stripped, the rest of the request kept.
    const byKey = await request(`${svc.proxy_url}headers?a=1&b=2`, { headers: { authorization: `Bearer ${tenantKey}`, 'x-app': 'kept', connection: 'keep-alive, x-hop', 'x-hop': 'gone' } });
    expect(byKey.status).toBe(200);
    const seen = JSON.parse(byKey.body);
    expect(seen.path).toBe('/headers?a=1&b=2');
    expect(seen.headers['x-app']).toBe('kept');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-hop']).toBeUndefined();
    expect(Object.keys(seen.headers).filter((h) => h.startsWith('x-kiln'))).toEqual([]);
    const byHost = await request(`${kiln.url}/`, { headers: { host: `${svc.id}.${DOMAIN}`, authorization: `Bearer ${tenantKey}` } });
    expect(byHost).toMatchObject({ status: 200, body: 'hello from the service\n' });

    // A scoped token: as the header, and once in the query (303 to the clean URL with an HttpOnly cookie).
    const token = await admin.services.createToken(svc.id, { ttl_seconds: 300 });
    expect(token.url).toBe(`${svc.proxy_url}?kiln_token=${encodeURIComponent(token.token)}`);
    const byToken = await request(`${svc.proxy_url}headers`, { headers: { 'x-kiln-service-token': token.token, cookie: 'app=1' } });
    expect(byToken.status).toBe(200);
    expect(JSON.parse(byToken.body).headers).toMatchObject({ cookie: 'app=1' });
    expect(JSON.parse(byToken.body).headers['x-kiln-service-token']).toBeUndefined();
    const viaQuery = await request(`${svc.proxy_url}headers?kiln_token=${encodeURIComponent(token.token)}&x=1`);
    expect(viaQuery.status).toBe(303);
    expect(viaQuery.headers.location).toBe(`/v1/services/${svc.id}/proxy/headers?x=1`);
    const cookie = viaQuery.headers['set-cookie']![0]!;
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain(`Path=/v1/services/${svc.id}/proxy`);
    const byCookie = await request(`${kiln.url}${viaQuery.headers.location}`, { headers: { cookie: cookie.split(';')[0]! } });
    expect(byCookie.status).toBe(200);
    expect(JSON.parse(byCookie.body).headers.cookie).toBeUndefined();
    const hostToken = await request(`${kiln.url}/`, { headers: { host: `${svc.id.replace('_', '-')}.${DOMAIN}`, 'x-kiln-service-token': token.token } });
    expect(hostToken.status).toBe(200);

    // Refused: no credential, another service's token, another tenant's key (404), expired, revoked.
    expect((await request(svc.proxy_url)).status).toBe(401);
    expect((await request(`${kiln.url}/`, { headers: { host: `${svc.id}.${DOMAIN}` } })).status).toBe(401);
    const secondToken = await admin.services.createToken(second.id);
    expect((await request(svc.proxy_url, { headers: { 'x-kiln-service-token': secondToken.token } })).status).toBe(401);
    expect((await request(`${second.proxy_url}`, { headers: { 'x-kiln-service-token': secondToken.token } })).status).toBe(200);
    const otherKey = (await kiln.operator.tenants.createKey(other.tenant.id)).key;
    expect((await request(svc.proxy_url, { headers: { authorization: `Bearer ${otherKey}` } })).status).toBe(404);
    const shortLived = await admin.services.createToken(svc.id, { ttl_seconds: 1 });
    expect((await request(svc.proxy_url, { headers: { 'x-kiln-service-token': shortLived.token } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await request(svc.proxy_url, { headers: { 'x-kiln-service-token': shortLived.token } })).status).toBe(401);
    await admin.services.revokeToken(svc.id, token.id);
    expect((await request(svc.proxy_url, { headers: { 'x-kiln-service-token': token.token } })).status).toBe(401);
    await expect(other.admin.services.createToken(svc.id)).rejects.toMatchObject({ status: 404 });

    const fresh = await admin.services.createToken(svc.id);
    const auth = { 'x-kiln-service-token': fresh.token };
    // A streamed body both ways (1 MiB).
    const body = Buffer.alloc(1024 * 1024, 'k');
    const echoed = await request(`${svc.proxy_url}echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body });
    expect(echoed.status).toBe(200);
    expect(echoed.body.length).toBe(body.length);
    // Server-sent events pass as they come.
    const sse = await fetch(`${svc.proxy_url}events`, { headers: auth });
    expect(sse.headers.get('content-type')).toBe('text/event-stream');
    expect(await sse.text()).toBe('event: tick\ndata: 0\n\nevent: tick\ndata: 1\n\nevent: tick\ndata: 2\n\n');
    // A WebSocket, through the path and the Host route.
    for (const [url, headers] of [
      [`${svc.proxy_url.replace('http', 'ws')}ws`, auth],
      [`${kiln.url.replace('http', 'ws')}/ws`, { ...auth, host: `${svc.id}.${DOMAIN}` }],
    ] as const) {
      const ws = new WebSocket(url, { headers });
      const reply = await new Promise<string>((resolve, reject) => {
        ws.once('open', () => ws.send('ping'));
        ws.once('message', (data) => resolve(String(data)));
        ws.once('error', reject);
      });
      expect(reply).toBe('echo:ping');
      ws.close();
    }
    const refusedWs = new WebSocket(`${svc.proxy_url.replace('http', 'ws')}ws`);
    expect(await new Promise((resolve) => refusedWs.once('unexpected-response', (_req, res) => resolve(res.statusCode)))).toBe(401);
    // A slow upstream is a clear 504, never a hung client.
    const slow = await request(`${svc.proxy_url}slow`, { headers: auth });
    expect(slow.status).toBe(504);
    expect(JSON.parse(slow.body)).toMatchObject({ code: 'GATEWAY_TIMEOUT' });

    // Proxied traffic is activity.
    expect(Date.parse((await admin.services.get(svc.id)).last_activity_at)).toBeGreaterThan(Date.parse(svc.created_at));

    // The log, from the start, as server-sent events.
    const logs: string[] = [];
    const follow = (async () => {
      for await (const e of admin.services.logs(svc.id)) {
        if (e.type === 'output') logs.push(e.chunk.data);
        if (e.type === 'end') return e;
      }
    })();
    await eventually('the log to have the first line', async () => logs.join('').includes('listening on 8000'));
    expect(logs.join('')).toContain('request "GET /headers');

    // Stop: stopped, the sandbox destroyed, the proxy answers 404, the log stream ends.
    const stopped = await admin.services.stop(svc.id);
    expect(stopped).toMatchObject({ status: 'stopped', reason: 'stopped' });
    expect(await follow).toMatchObject({ type: 'end' });
    expect((await request(svc.proxy_url, { headers: auth })).status).toBe(404);
    await eventually('the sandbox to be destroyed', async () => {
      const sandboxes = await kiln.operator.sandboxes.list({ runner_id: svc.runner_id! });
      return sandboxes.items.find((s) => s.id === svc.sandbox_id)?.status === 'terminated';
    });
    // Once the sandbox is gone the end of the log is still there.
    const kept: string[] = [];
    for await (const e of admin.services.logs(svc.id)) if (e.type === 'output') kept.push(e.chunk.data);
    expect(kept.join('')).toContain('listening on 8000');
    const listed = await admin.services.list({ status: 'running' });
    expect(listed.items.map((s) => s.id)).toEqual([second.id]);
    expect((await other.admin.services.list()).items).toEqual([]);
    const audit = await admin.audit.list({ limit: 200 });
    const actions = audit.items.filter((e) => e.resource_id === svc.id).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['service.create', 'service.running', 'service.token.create', 'service.token.revoke', 'service.stop']));
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 180_000);

  it('readiness timeout, on-failure restarts, max_running, session ports, suspension, and a SIGKILLed runner', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const runner = await kiln.startRunner({ name: 'svc-life', capacity: 2 });
    const { admin, tenant } = await kiln.newTenant();
    await allowServices(admin, { max_running: 3 });

    // max_running counts starting services; a starting service may be stopped (idempotently).
    const waiting: Service[] = [];
    for (let i = 0; i < 3; i++) waiting.push(await admin.services.create({ command: 'sleep 60', port: 9100 + i, readiness: { timeout_ms: 60_000 } }));
    await expect(admin.services.create({ command: 'sleep 60', port: 9002 })).rejects.toMatchObject({ status: 422, code: 'POLICY_VIOLATION' });
    for (const w of waiting) expect(await admin.services.stop(w.id)).toMatchObject({ status: 'stopped', reason: 'stopped' });
    expect(await admin.services.stop(waiting[0]!.id)).toMatchObject({ status: 'stopped' });

    // Nothing ever listens: terminated, readiness_timeout.
    const deaf = await admin.services.create({ command: 'sleep 60', port: 9000, readiness: { timeout_ms: 800 } });
    // Fails once, then serves: on-failure restarts it and it runs, restarts 1.
    const flaky = await admin.services.create({
      command: 'if [ ! -f started ]; then touch started; echo failing >&2; exit 3; fi; exec python3 -m http.server 8001 --bind 127.0.0.1',
      port: 8001,
      restart: 'on-failure',
      readiness: { path: '/', timeout_ms: 20_000 },
    });
    // Crashes without restarts: terminated, crashed.
    const crash = await admin.services.create({ command: 'exit 4', port: 9001 });

    expect(await ended(admin, deaf.id)).toMatchObject({ status: 'terminated', reason: 'readiness_timeout' });
    expect(await ended(admin, crash.id)).toMatchObject({ status: 'terminated', reason: 'crashed' });
    const healed = await running(admin, flaky.id);
    expect(healed.restarts).toBe(1);
    const listing = await request(healed.proxy_url, { headers: { 'x-kiln-service-token': (await admin.services.createToken(flaky.id)).token } });
    expect(listing.body).toContain('started');

    // A session exposes a port the same way: getHost, the tenant's key, a token for that port alone.
    const key = (await kiln.operator.tenants.createKey(tenant.id)).key;
    const sbx = await Sandbox.create({ url: kiln.url, apiKey: key });
    await sbx.commands.run('exec python3 -m http.server 8003 --bind 127.0.0.1', { background: true });
    const host = sbx.getHost(8003);
    expect(host).toBe(`${new URL(kiln.url).host}/v1/sessions/${sbx.sandboxId}/ports/8003/proxy`);
    await eventually('the session port to answer', async () => (await request(`http://${host}/`, { headers: { authorization: `Bearer ${key}` } })).status === 200);
    const portToken = await sbx.getPortToken(8003, { ttlSeconds: 60 });
    expect((await request(`http://${host}/`, { headers: { 'x-kiln-service-token': portToken.token } })).status).toBe(200);
    expect((await request(`http://${host.replace('/8003/', '/8004/')}/`, { headers: { 'x-kiln-service-token': portToken.token } })).status).toBe(401);
    expect((await request(healed.proxy_url, { headers: { 'x-kiln-service-token': portToken.token } })).status).toBe(401);
    expect((await request(`http://${host}/`)).status).toBe(401);
    await sbx.kill();

    // A suspended tenant's services end with it.
    const { admin: doomed, tenant: doomedTenant } = await kiln.newTenant();
    await allowServices(doomed);
    const doomedSvc = await doomed.services.create({ command: 'exec python3 -m http.server 8002 --bind 127.0.0.1', port: 8002 });
    await running(doomed, doomedSvc.id);
    await kiln.operator.tenants.suspend(doomedTenant.id);
    expect(await ended(doomed, doomedSvc.id)).toMatchObject({ status: 'terminated', reason: 'tenant_suspended' });

    // The runner is SIGKILLed: its services end, runner_lost.
    await runner.kill();
    expect(await ended(admin, flaky.id)).toMatchObject({ status: 'terminated', reason: 'runner_lost' });
    const actions = (await admin.audit.list({ limit: 200 })).items.filter((e) => e.resource_id === flaky.id).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['service.create', 'service.restart', 'service.running', 'service.terminate']));
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 180_000);
});
