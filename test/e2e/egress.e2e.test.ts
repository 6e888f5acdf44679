import { DEFAULT_RULESET, type Service } from '@kiln/core';
import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDns, type TestDns } from '../support/egress/test-dns.js';
import { startTestHosts, type TestHosts } from '../support/egress/test-hosts.js';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

/**
 * Issue 9, point 4, with the real processes: a policy with `egress: "allowlist"` lets a job, a
 * session and a service reach an allowed test host (in a network namespace, named by a resolver the test controls)
 * and nothing else; the refusals are audited in aggregate; `egress: none` stays as it was.
 */
let hosts: TestHosts;
let dns: TestDns;

beforeAll(async () => {
  hosts = await startTestHosts(['api.allowed.test']);
  dns = await startTestDns({ 'api.allowed.test': [hosts.address], 'other.blocked.test': [hosts.address], 'meta.allowed.test': ['169.254.169.254'] });
}, 60_000);

afterAll(async () => {
  hosts?.stop();
  await dns?.stop();
});

const ALLOW = ['api.allowed.test:80', 'api.allowed.test:443', 'meta.allowed.test:80'];
const SERVICES_ALLOWED = { ...DEFAULT_RULESET.services, allowed: true, max_running: 2 };

/**
 * A service whose start-up runs `setup` in /workspace and then serves that folder on port 8000, so the
 * test reads what the setup wrote through the service proxy (with a scoped token).
 */
async function serveAfter(client: KilnClient, setup: string, policyId?: string): Promise<Service> {
  const created = await client.services.create({
    command: `${setup}\nexec python3 -m http.server 8000 --bind 127.0.0.1`,
    port: 8000,
    ...(policyId ? { policy_id: policyId } : {}),
  });
  return eventually(`service ${created.id} to run`, async () => {
    const s = await client.services.get(created.id);
    if (s.status === 'terminated' || s.status === 'stopped') throw new Error(`service ended: ${JSON.stringify(s)}`);
    return s.status === 'running' ? s : undefined;
  });
}

async function readThroughProxy(client: KilnClient, service: Service, file: string): Promise<string> {
  const { token } = await client.services.createToken(service.id, { ttl_seconds: 120 });
  const res = await fetch(`${service.proxy_url}${file}`, { headers: { 'x-kiln-service-token': token } });
  expect(res.status, file).toBe(200);
  return res.text();
}

describe.each<DbKind>(['sqlite', 'postgres'])('egress by allowlist end to end (%s)', (db) => {
  const kiln = new KilnSystem(db);

  beforeAll(async () => {
    await kiln.startServer();
    // The operator (not a tenant) opens the test network's range and names the test's resolver.
    await kiln.startRunner({ name: 'egress', capacity: 2, env: { KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr, KILN_EGRESS_RESOLVER: dns.server } });
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  async function tenantWithEgress() {
    const t = await kiln.newTenant();
    const policy = await t.admin.policies.create({
      name: 'egress',
      ruleset: { ...DEFAULT_RULESET, network: { egress: 'allowlist', allow: ALLOW }, services: SERVICES_ALLOWED },
    });
    return { ...t, policy };
  }

  it('a job reaches an allowed host, is refused another and a name resolving to metadata; the denials are audited once', async () => {
    const { admin, agentClient, policy } = await tenantWithEgress();
    const code = [
      'curl -sS -w " %{http_code}\\n" http://api.allowed.test/from-job',
      'curl -sS -o /dev/null -w "blocked %{http_code}\\n" http://other.blocked.test/',
      'curl -sS -o /dev/null -w "blocked %{http_code}\\n" http://other.blocked.test/again',
      'curl -sS -o /dev/null -w "metadata %{http_code}\\n" http://meta.allowed.test/latest/meta-data/',
      `python3 -c "import socket; s=socket.socket(); s.settimeout(2); s.connect(('${hosts.address}', 80))" 2>&1 | tail -1`,
    ].join('\n');
    const job = await agentClient.jobs.createAndWait({ language: 'bash', code, policy_id: policy.id });
    expect(job.verdict, job.stderr ?? '').toBe('ok');
    expect(job.stdout).toContain('GET /from-job host=api.allowed.test');
    expect(job.stdout).toContain(' 200');
    expect(job.stdout).toContain('blocked 403');
    expect(job.stdout).toContain('metadata 403');
    expect(job.stdout).toMatch(/OSError|Network is unreachable/);
    expect(job.resource_usage).toMatchObject({ egress_connections: 1, egress_denied: 3 });
    const audit = await admin.audit.list({ action: 'egress.deny', resource_id: job.id });
    expect(audit.items).toHaveLength(1);
    expect(audit.items[0]).toMatchObject({ outcome: 'denied', resource_type: 'job' });
    expect(audit.items[0]!.details).toMatchObject({
      connections_denied: 3,
      denied: expect.arrayContaining([
        { host: 'other.blocked.test', port: 80, reason: 'not_allowed', count: 2 },
        { host: 'meta.allowed.test', port: 80, reason: 'address_refused', count: 1 },
      ]),
    });
    // Counted in /metrics too, by kind, outcome and reason (never by host). This is the file's first job.
    const metrics = await (await fetch(`${kiln.url}/metrics`)).text();
    expect(metrics).toMatch(/^kiln_egress_connections_total\{sandbox="job",outcome="allowed"\} 1$/m);
    expect(metrics).toMatch(/^kiln_egress_connections_total\{sandbox="job",outcome="denied"\} 3$/m);
    expect(metrics).toMatch(/^kiln_egress_denials_total\{sandbox="job",reason="not_allowed"\} 2$/m);
    expect(metrics).toMatch(/^kiln_egress_denials_total\{sandbox="job",reason="address_refused"\} 1$/m);
    expect(Number(/^kiln_egress_bytes_total\{sandbox="job",direction="received"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(metrics).not.toContain('blocked.test');
  }, 60_000);

  it('the default policy keeps egress none: no proxy, no audit, no network', async () => {
    const { admin, agentClient } = await kiln.newTenant();
    const job = await agentClient.jobs.createAndWait({ language: 'bash', code: 'env | grep -ci _proxy=; curl -sS -m 3 http://api.allowed.test/ 2>&1 | tail -1' });
    expect(job.stdout).toMatch(/^0\n.*(Could not resolve|Failed|Couldn't)/s);
    expect(job.resource_usage).not.toHaveProperty('egress_connections');
    expect((await admin.audit.list({ action: 'egress.deny' })).items).toHaveLength(0);
  }, 60_000);

  it('a session reaches an allowed host through its persistent sandbox; its denials are audited when it ends', async () => {
    const { admin, tenantKey, policy } = await tenantWithEgress().then(async (t) => ({ ...t, tenantKey: (await kiln.operator.tenants.createKey(t.tenant.id)).key }));
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${kiln.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${tenantKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const session = await call('POST', '/v1/sessions', { policy_id: policy.id, ttl_seconds: 300 });
    expect(session.status).toBe(201);
    const reached = await call('POST', `/v1/sessions/${session.body.id}/steps`, { command: 'curl -sS http://api.allowed.test/from-session' });
    expect(reached.body.stdout).toContain('GET /from-session host=api.allowed.test');
    const refused = await call('POST', `/v1/sessions/${session.body.id}/steps`, { command: 'curl -sS -o /dev/null -w "%{http_code}" http://other.blocked.test/' });
    expect(refused.body.stdout).toBe('403');
    expect((await call('DELETE', `/v1/sessions/${session.body.id}`)).status).toBe(200);
    const audit = await admin.audit.list({ action: 'egress.deny', resource_id: session.body.id });
    expect(audit.items).toHaveLength(1);
    expect(audit.items[0]!.details).toMatchObject({ connections_denied: 1, connections_allowed: 1 });
    const metrics = await (await fetch(`${kiln.url}/metrics`)).text();
    expect(metrics).toMatch(/^kiln_egress_connections_total\{sandbox="session",outcome="allowed"\} 1$/m);
    expect(metrics).toMatch(/^kiln_egress_denials_total\{sandbox="session",reason="not_allowed"\} 1$/m);
  }, 60_000);

  it('a service reaches an allowed host and is refused another; its denials are audited when it stops', async () => {
    const { admin, policy } = await tenantWithEgress();
    const setup = [
      "env | grep -ci '^\\(http\\|https\\|all\\)_proxy=' > proxies.txt",
      'curl -sS http://api.allowed.test/from-service > reached.txt 2>&1',
      'curl -sS -o /dev/null -w "%{http_code}" http://other.blocked.test/ > refused.txt 2>&1',
    ].join('\n');
    const service = await serveAfter(admin, setup, policy.id);
    // Six variables: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and their lower-case forms.
    expect((await readThroughProxy(admin, service, 'proxies.txt')).trim()).toBe('6');
    expect(await readThroughProxy(admin, service, 'reached.txt')).toContain('GET /from-service host=api.allowed.test');
    expect(await readThroughProxy(admin, service, 'refused.txt')).toBe('403');
    expect((await admin.services.stop(service.id)).status).toBe('stopped');
    const audit = await eventually('the service\'s egress.deny event', async () => {
      const page = await admin.audit.list({ action: 'egress.deny', resource_id: service.id });
      return page.items.length > 0 ? page.items : undefined;
    });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ outcome: 'denied', resource_type: 'service' });
    expect(audit[0]!.details).toMatchObject({
      connections_denied: 1,
      connections_allowed: 1,
      denied: [{ host: 'other.blocked.test', port: 80, reason: 'not_allowed', count: 1 }],
    });
  }, 60_000);

  it('a service under the default egress none keeps no proxy variables and no network', async () => {
    const { admin } = await kiln.newTenant();
    const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
    await admin.policies.publish(policy.id, { ruleset: { ...DEFAULT_RULESET, services: SERVICES_ALLOWED }, expected_version: policy.version });
    const service = await serveAfter(admin, 'env | grep -ci _proxy= > proxies.txt\ncurl -sS -m 3 http://api.allowed.test/ > curl.txt 2>&1');
    expect((await readThroughProxy(admin, service, 'proxies.txt')).trim()).toBe('0');
    expect(await readThroughProxy(admin, service, 'curl.txt')).toMatch(/Could not resolve|Failed|Couldn't/);
    await admin.services.stop(service.id);
    expect((await admin.audit.list({ action: 'egress.deny' })).items).toHaveLength(0);
  }, 60_000);
});
