import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KILN_MCP_TOOLS } from '@kiln/mcp';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../../store/testing.js';
import { openTestApp, registerIdleRunner, seedTenant, TEST_ADMIN_KEY, type TestApp } from '../testing.js';

/**
 * The `/mcp` endpoint in process, on a listening app and both stores, with a runner that never polls:
 * jobs stay queued, so what is checked is the endpoint's own part (the key, the API's answers as tool
 * results, the wait that ends with the job still queued). Sandboxes and progress: test/e2e/mcp.e2e.test.ts.
 */
describe.each(DB_KINDS)('/mcp (%s)', (kind) => {
  let t: TestApp;
  let artifactsDir: string;
  let url: string;
  const clients: Client[] = [];

  beforeEach(async () => {
    artifactsDir = mkdtempSync(join(tmpdir(), 'kiln-mcp-'));
    t = await openTestApp(kind, { jobs: { artifactsDir } });
    url = await t.app.listen({ port: 0, host: '127.0.0.1' });
    await registerIdleRunner(t);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await t.close();
    rmSync(artifactsDir, { recursive: true, force: true });
  });

  async function connect(key: string): Promise<Client> {
    const client = new Client({ name: 'test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    clients.push(client);
    return client;
  }

  const call = async (client: Client, name: string, args: Record<string, unknown> = {}) => {
    const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
    return { isError: result.isError === true, body: result.structuredContent as Record<string, any> };
  };

  it('acts with the caller\'s key: its own job is there, another tenant\'s is NOT_FOUND, and each call is the API\'s own', async () => {
    const a = await seedTenant(t, 'alpha');
    const b = await seedTenant(t, 'beta');
    const theirs = (await t.call('POST', '/v1/jobs', b.agentKey, { language: 'python', code: 'print(1)' })).json();
    expect(theirs.status).toBe('queued');

    const mine = await connect(a.agentKey);
    expect((await mine.listTools()).tools.map((tool) => tool.name).sort()).toEqual([...KILN_MCP_TOOLS].sort());
    expect((await call(mine, 'list_languages')).body.languages).toEqual([expect.objectContaining({ name: 'python' })]);
    for (const name of ['get_job', 'cancel_job']) {
      expect(await call(mine, name, { job_id: theirs.id })).toEqual({ isError: true, body: { error: expect.objectContaining({ code: 'NOT_FOUND', status: 404 }) } });
    }

    // run_code's wait ends with the job still queued (no runner takes it): its id, and how to follow it.
    const waited = await call(mine, 'run_code', { language: 'python', code: 'print(2)', wait_seconds: 1 });
    expect(waited.isError).toBe(false);
    expect(waited.body).toMatchObject({ status: 'queued', verdict: null, exit_code: null });
    expect(waited.body.note).toContain(waited.body.job_id);
    expect((await call(mine, 'cancel_job', { job_id: waited.body.job_id })).body).toMatchObject({ status: 'canceled', verdict: 'canceled' });

    const owner = await connect(b.agentKey);
    expect((await call(owner, 'get_job', { job_id: theirs.id })).body).toMatchObject({ job_id: theirs.id, status: 'queued' });
    expect((await call(owner, 'cancel_job', { job_id: theirs.id })).body).toMatchObject({ status: 'canceled' });
    // The API audited the cancel with the agent as actor; the refused attempts of the other tenant left theirs alone.
    const audit = (await t.call('GET', '/v1/audit-events?action=job.cancel', b.tenantKey)).json();
    expect(audit.items).toEqual([expect.objectContaining({ actor_id: b.agent.id, resource_id: theirs.id, outcome: 'success' })]);
  });

  it('refuses a policy violation and a suspended tenant as tool results, not protocol errors', async () => {
    const a = await seedTenant(t, 'gamma');
    const client = await connect(a.agentKey);
    const tooLong = await call(client, 'run_code', { language: 'python', code: 'print(1)', limits: { wall_time_ms: 86_400_000 } });
    expect(tooLong).toMatchObject({ isError: true, body: { error: { code: 'POLICY_VIOLATION', field: 'body.limits.wall_time_ms' } } });
    await t.call('PATCH', `/v1/tenants/${a.tenant.id}`, TEST_ADMIN_KEY, { status: 'suspended' });
    expect((await call(client, 'run_code', { language: 'python', code: 'print(1)' })).body.error.code).toBe('TENANT_SUSPENDED');
  });
});
