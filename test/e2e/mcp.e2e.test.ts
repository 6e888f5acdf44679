import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { DEFAULT_RULESET } from '@kiln/core';
import { KILN_MCP_TOOLS } from '@kiln/mcp';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem } from './support/kiln-system.js';

const CLI = join(import.meta.dirname, '../../packages/cli/bin/kiln.js');

type Tenant = Awaited<ReturnType<typeof keyedTenant>>;

async function keyedTenant(kiln: KilnSystem) {
  const tenant = await kiln.operator.tenants.create({ name: `t-${Math.random().toString(36).slice(2, 8)}` });
  const admin = kiln.client((await kiln.operator.tenants.createKey(tenant.id)).key);
  const agent = await admin.agents.create({ name: 'mcp-agent' });
  const agentKey = (await admin.agents.createKey(agent.id)).key;
  // Services allowed, so get_service_url has a real service to answer.
  const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
  await admin.policies.publish(policy.id, {
    ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true, max_running: 2 } },
    expected_version: policy.version,
  });
  return { tenant, admin, agent, agentKey, agentClient: kiln.client(agentKey) };
}

/** A real service (Python's http.server) serving a page that says `served`, once it runs. */
async function servePage(tenant: Tenant) {
  const created = await tenant.agentClient.services.create({ command: 'echo served > index.html; exec python3 -m http.server 8000 --bind 127.0.0.1', port: 8000 });
  return eventually(`service ${created.id} to run`, async () => {
    const s = await tenant.agentClient.services.get(created.id);
    if (s.status === 'terminated' || s.status === 'stopped') throw new Error(`service ended: ${JSON.stringify(s)}`);
    return s.status === 'running' ? s : undefined;
  });
}

/** get_service_url on a real service and a sandbox port: the URLs it answers open through the proxy with its token. */
async function exerciseServiceUrls(client: Client, me: Tenant, other: Tenant, sandboxId: string) {
  const service = await servePage(me);
  try {
    const plain = await ok(client, 'get_service_url', { service_id: service.id });
    expect(plain.body).toMatchObject({ service_id: service.id, status: 'running', port: 8000, public: false, url: service.proxy_url });
    expect(plain.body.token).toBeUndefined();
    expect(plain.body.how_to_open).toContain('token: true');
    // Private: the URL alone is refused.
    expect((await fetch(plain.body.url)).status).toBe(401);

    const opened = await ok(client, 'get_service_url', { service_id: service.id, token_ttl_seconds: 120 });
    expect(opened.body).toMatchObject({ url: service.proxy_url, token_header: 'X-Kiln-Service-Token' });
    expect(opened.body.browser_url).toBe(`${service.proxy_url}?kiln_token=${encodeURIComponent(opened.body.token)}`);
    expect(Date.parse(opened.body.token_expires_at) - Date.now()).toBeLessThanOrEqual(120_000);
    const byHeader = await fetch(opened.body.url, { headers: { [opened.body.token_header]: opened.body.token } });
    expect(byHeader.status).toBe(200);
    expect(await byHeader.text()).toBe('served\n');
    // As a browser: the ?kiln_token= URL once, then its cookie.
    const first = await fetch(opened.body.browser_url, { redirect: 'manual' });
    expect(first.status).toBe(303);
    const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    const again = await fetch(new URL(first.headers.get('location')!, opened.body.url), { headers: { cookie } });
    expect(await again.text()).toBe('served\n');

    // Another tenant's service and sandbox are NOT_FOUND; bad arguments name their field.
    const theirs = await other.agentClient.services.create({ command: 'exec sleep 60', port: 8000 });
    expect((await refused(client, 'get_service_url', { service_id: theirs.id, token: true })).code).toBe('NOT_FOUND');
    await other.agentClient.services.stop(theirs.id);
    expect(await refused(client, 'get_service_url', {})).toMatchObject({ code: 'VALIDATION_FAILED', field: 'service_id' });
    expect(await refused(client, 'get_service_url', { sandbox_id: sandboxId })).toMatchObject({ code: 'VALIDATION_FAILED', field: 'port' });
    expect(await refused(client, 'get_service_url', { service_id: service.id, sandbox_id: sandboxId, port: 1 })).toMatchObject({ code: 'VALIDATION_FAILED' });
    const theirBox = await other.agentClient.request<{ id: string }>('POST', '/v1/sessions', { body: {} });
    expect((await refused(client, 'get_service_url', { sandbox_id: theirBox.id, port: 9000 })).code).toBe('NOT_FOUND');
    await other.agentClient.request('DELETE', `/v1/sessions/${theirBox.id}`);
  } finally {
    await me.agentClient.services.stop(service.id);
  }

  // A port of a sandbox: a server started in it, opened with the token get_service_url minted.
  await ok(client, 'run_command', { sandbox_id: sandboxId, command: 'python3 -m http.server 9000 --bind 127.0.0.1', background: true });
  const port = await ok(client, 'get_service_url', { sandbox_id: sandboxId, port: 9000, token: true });
  expect(port.body).toMatchObject({ sandbox_id: sandboxId, port: 9000, status: 'active', url: `${port.body.browser_url.split('?')[0]}` });
  expect(port.body.url).toMatch(new RegExp(`/v1/sessions/${sandboxId}/ports/9000/proxy/$`));
  const file = await eventually('the sandbox port to answer', async () => {
    const res = await fetch(`${port.body.url}src/data.txt`, { headers: { [port.body.token_header]: port.body.token } });
    return res.status === 200 ? res.text() : undefined;
  });
  expect(file).toBe('line one\n');
  const unminted = await ok(client, 'get_service_url', { sandbox_id: sandboxId, port: 9000 });
  expect(unminted.body.url).toBe(port.body.url);
  expect((await fetch(unminted.body.url)).status).toBe(401);
}

async function httpClient(url: string, key: string | undefined): Promise<Client> {
  const client = new Client({ name: 'kiln-e2e', version: '1.0.0' });
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers } }));
  return client;
}

async function stdioClient(url: string, key: string): Promise<Client> {
  const client = new Client({ name: 'kiln-e2e', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_URL: url, KILN_API_KEY: key }, stderr: 'ignore' }),
  );
  return client;
}

/** Uses a connected client, then closes it (and the `kiln mcp` process behind a stdio one). */
async function withClient(connecting: Promise<Client>, use: (client: Client) => Promise<void>): Promise<void> {
  const client = await connecting;
  try {
    await use(client);
  } finally {
    await client.close();
  }
}

/** Calls a tool; `progress` collects the progress notifications (the SDK sends a progressToken then). */
async function call(client: Client, name: string, args: Record<string, unknown>, progress?: Progress[]) {
  const result = (await client.callTool({ name, arguments: args }, undefined, {
    timeout: 60_000,
    ...(progress ? { onprogress: (p: Progress) => progress.push(p), resetTimeoutOnProgress: true } : {}),
  })) as CallToolResult;
  return { result, body: result.structuredContent as Record<string, any> };
}

async function ok(client: Client, name: string, args: Record<string, unknown>, progress?: Progress[]) {
  const { result, body } = await call(client, name, args, progress);
  expect(result.isError, `${name}: ${JSON.stringify(result.content)}`).toBeFalsy();
  return { result, body };
}

async function refused(client: Client, name: string, args: Record<string, unknown>) {
  const { result, body } = await call(client, name, args);
  expect(result.isError, `${name} should be refused`).toBe(true);
  expect(result.content[0]).toMatchObject({ type: 'text' });
  return body.error as { code: string; message: string; status?: number; field?: string };
}

/**
 * Every tool through one MCP client, as an agent would use them, against a real server, runner and
 * sandboxes: listing, jobs with progress, text and binary artifacts, truncation, cancel, sessions, and
 * errors (another tenant's objects, bad input) as tool results.
 */
async function exerciseEveryTool(client: Client, me: Tenant, other: Tenant) {
  const tools = (await client.listTools()).tools;
  expect(tools.map((t) => t.name).sort()).toEqual([...KILN_MCP_TOOLS].sort());
  for (const tool of tools) {
    expect(tool.description!.length, tool.name).toBeGreaterThan(40);
    expect(tool.inputSchema.type).toBe('object');
  }
  const runCode = tools.find((t) => t.name === 'run_code')!;
  expect(Object.keys(runCode.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(['language', 'code', 'files', 'stdin', 'limits']));

  const languages = await ok(client, 'list_languages', {});
  expect(languages.body.languages.map((l: { name: string }) => l.name)).toContain('python');

  // A job that prints over a second, reads stdin and leaves a text and a binary artifact.
  const progress: Progress[] = [];
  const code = [
    'import os, sys, time',
    'print(sys.stdin.read().upper(), flush=True)',
    'for i in range(3):',
    '    print("tick", i, flush=True); time.sleep(0.4)',
    'os.makedirs("out", exist_ok=True)',
    'open("out/notes.txt", "w").write("notes")',
    'open("out/blob.bin", "wb").write(bytes(range(256)))',
  ].join('\n');
  const run = await ok(client, 'run_code', { language: 'python', code, stdin: 'hello', limits: { wall_time_ms: 20_000 } }, progress);
  expect(run.body).toMatchObject({ status: 'succeeded', verdict: 'ok', exit_code: 0, stdout: 'HELLO\ntick 0\ntick 1\ntick 2\n', stdout_truncated: false });
  expect(run.body.artifact_ids).toHaveLength(2);
  expect(progress.length).toBeGreaterThanOrEqual(2);
  expect(progress.map((p) => p.progress)).toEqual([...progress.map((p) => p.progress)].sort((a, b) => a - b));
  expect(progress.at(-1)!.message).toMatch(/bytes of output/);

  const job = await ok(client, 'get_job', { job_id: run.body.job_id });
  expect(job.body).toMatchObject({ job_id: run.body.job_id, status: 'succeeded', verdict: 'ok' });

  // Artifacts: text inline, binary as a resource link whose resource holds the bytes.
  const artifacts = await Promise.all(run.body.artifact_ids.map((id: string) => ok(client, 'get_artifact', { artifact_id: id })));
  const text = artifacts.find((a) => a.body.name.endsWith('notes.txt'))!;
  expect(text.body).toMatchObject({ kind: 'text', text: 'notes', truncated: false });
  const binary = artifacts.find((a) => a.body.name.endsWith('blob.bin'))!;
  expect(binary.body.kind).toBe('binary');
  const link = binary.result.content.find((c) => c.type === 'resource_link') as { uri: string; name: string } | undefined;
  expect(link?.uri).toBe(`kiln://artifacts/${binary.body.artifact_id}`);
  const resource = await client.readResource({ uri: link!.uri });
  expect(Buffer.from((resource.contents[0] as { blob: string }).blob, 'base64')).toEqual(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));

  // Output past the inline cap says so and names the artifact that holds all of it.
  const loud = await ok(client, 'run_code', { language: 'python', code: 'print("x" * 100000)' });
  expect(loud.body.stdout_truncated).toBe(true);
  expect(loud.body.stdout.length).toBeLessThanOrEqual(32 * 1024);
  expect(loud.body.note).toContain(loud.body.stdout_artifact_id);
  const whole = await ok(client, 'get_artifact', { artifact_id: loud.body.stdout_artifact_id, max_chars: 1000 });
  expect(whole.body).toMatchObject({ kind: 'text', truncated: true, size_bytes: 100001 });
  expect(whole.body.text).toHaveLength(1000);

  // A job that outlives the wait answers "running" with its id; cancel_job ends it.
  const slow = await ok(client, 'run_code', { language: 'bash', code: 'sleep 30', wait_seconds: 1 });
  expect(['queued', 'running']).toContain(slow.body.status);
  expect(slow.body.note).toContain('get_job');
  const canceled = await ok(client, 'cancel_job', { job_id: slow.body.job_id });
  expect(canceled.body.status).toBe('canceled');

  // Cancelling the MCP request cancels its job; the progress messages named the job before any answer.
  const abort = new AbortController();
  const seen: Progress[] = [];
  const abandoned = client.callTool({ name: 'run_code', arguments: { language: 'bash', code: 'echo start; sleep 30' } }, undefined, {
    signal: abort.signal,
    onprogress: (p) => seen.push(p),
  });
  const named = await eventually('a progress message naming the job', async () => seen.map((p) => /job (job_\w+)/.exec(p.message ?? '')?.[1]).find(Boolean));
  abort.abort();
  await expect(abandoned).rejects.toThrow();
  await eventually('the abandoned job to be canceled', async () => (await me.agentClient.jobs.get(named!)).status === 'canceled');

  // Errors are results carrying kiln's code: another tenant's job is NOT_FOUND, bad input names its field.
  const theirs = await other.agentClient.jobs.createAndWait({ language: 'python', code: 'print(1)' });
  expect((await refused(client, 'get_job', { job_id: theirs.id })).code).toBe('NOT_FOUND');
  expect((await refused(client, 'cancel_job', { job_id: theirs.id })).code).toBe('NOT_FOUND');
  expect((await refused(client, 'get_artifact', { artifact_id: theirs.output_refs!.stdout! })).code).toBe('NOT_FOUND');
  const invalid = await refused(client, 'run_code', { language: 'python', code: 'print(1)', files: [{ path: 'a.py', content: '' }] });
  expect(invalid).toMatchObject({ code: 'VALIDATION_FAILED', status: 400 });
  expect(invalid.field).toMatch(/^body\./);
  // Arguments outside a tool's own schema are refused by the MCP layer, also as a result.
  const schemaRefusal = await call(client, 'run_code', { code: 'print(1)' });
  expect(schemaRefusal.result.isError).toBe(true);
  expect(JSON.stringify(schemaRefusal.result.content)).toContain('language');
  const overLimit = await refused(client, 'run_code', { language: 'python', code: 'print(1)', limits: { wall_time_ms: 86_400_000 } });
  expect(overLimit.code).toBe('POLICY_VIOLATION');

  // Sessions: a sandbox across calls.
  const sandbox = await ok(client, 'create_sandbox', { ttl_seconds: 300, env: { GREETING: 'hi' } });
  expect(sandbox.body).toMatchObject({ status: 'active' });
  const id = sandbox.body.sandbox_id as string;
  expect(await ok(client, 'write_file', { sandbox_id: id, path: 'src/data.txt', content: 'line one\n' })).toMatchObject({ body: { size_bytes: 9 } });
  await ok(client, 'write_file', { sandbox_id: id, path: 'raw.bin', content: Buffer.from([0, 1, 2, 255]).toString('base64'), encoding: 'base64' });
  const stepProgress: Progress[] = [];
  const step = await ok(client, 'run_command', { sandbox_id: id, command: 'cat src/data.txt; echo $GREETING; sleep 0.6; echo done; exit 3' }, stepProgress);
  // A non-zero exit is an answer, not a tool error.
  expect(step.body).toMatchObject({ exit_code: 3, stdout: 'line one\nhi\ndone\n', status: 'failed' });
  expect(stepProgress.length).toBeGreaterThanOrEqual(1);
  const argv = await ok(client, 'run_command', { sandbox_id: id, command: ['sh', '-c', 'read x; echo got $x'], stdin: 'it\n' });
  expect(argv.body).toMatchObject({ exit_code: 0, stdout: 'got it\n' });
  // Cancelling a followed command kills it.
  const stopCommand = new AbortController();
  const commandProgress: Progress[] = [];
  const abandonedCommand = client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'sleep 30' } }, undefined, {
    signal: stopCommand.signal,
    onprogress: (p) => commandProgress.push(p),
  });
  const sequence = await eventually('a progress message naming the command', async () =>
    commandProgress.map((p) => /command (\d+) running/.exec(p.message ?? '')?.[1]).find(Boolean),
  );
  stopCommand.abort();
  await expect(abandonedCommand).rejects.toThrow();
  const killed = await eventually('the abandoned command to end', async () => {
    const s = await me.agentClient.request<{ status: string }>('GET', `/v1/sessions/${id}/steps/${sequence}`);
    return s.status !== 'running' && s.status !== 'queued' && s.status;
  });
  expect(killed).not.toBe('succeeded');
  const bg = await ok(client, 'run_command', { sandbox_id: id, command: 'sleep 20', background: true });
  expect(bg.body).toMatchObject({ status: 'running' });
  expect(await ok(client, 'read_file', { sandbox_id: id, path: 'src/data.txt' })).toMatchObject({ body: { content: 'line one\n', encoding: 'utf8', truncated: false } });
  expect(await ok(client, 'read_file', { sandbox_id: id, path: 'raw.bin' })).toMatchObject({ body: { content: 'AAEC/w==', encoding: 'base64' } });
  expect(await ok(client, 'read_file', { sandbox_id: id, path: 'src/data.txt', max_bytes: 4 })).toMatchObject({ body: { content: 'line', truncated: true } });
  const listing = await ok(client, 'list_files', { sandbox_id: id });
  expect(listing.body.entries.map((e: { name: string }) => e.name).sort()).toEqual(['raw.bin', 'src']);
  expect((await ok(client, 'list_files', { sandbox_id: id, path: 'src' })).body.entries).toMatchObject([{ name: 'data.txt', path: 'src/data.txt', type: 'file' }]);
  expect((await refused(client, 'read_file', { sandbox_id: id, path: 'missing.txt' })).code).toBe('NOT_FOUND');

  // Another tenant's sandbox is NOT_FOUND to every sandbox tool.
  const theirBox = await other.agentClient.request<{ id: string }>('POST', '/v1/sessions', { body: {} });
  for (const [name, args] of [
    ['run_command', { command: 'id' }],
    ['write_file', { path: 'x', content: 'y' }],
    ['read_file', { path: 'x' }],
    ['list_files', {}],
    ['kill_sandbox', {}],
  ] as const) {
    expect((await refused(client, name, { sandbox_id: theirBox.id, ...args })).code, name).toBe('NOT_FOUND');
  }
  await other.agentClient.request('DELETE', `/v1/sessions/${theirBox.id}`);

  await exerciseServiceUrls(client, me, other, id);

  expect((await ok(client, 'kill_sandbox', { sandbox_id: id })).body).toMatchObject({ status: 'terminated', reason: 'deleted' });
  const afterKill = await refused(client, 'run_command', { sandbox_id: id, command: 'true' });
  expect(afterKill.code).toMatch(/^[A-Z_]+$/);
}

describe('MCP server end to end (sqlite)', () => {
  const kiln = new KilnSystem('sqlite');
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'mcp', capacity: 4 });
    a = await keyedTenant(kiln);
    b = await keyedTenant(kiln);
  }, 120_000);
  afterAll(() => kiln.close(), 60_000);

  it('Streamable HTTP at /mcp: lists and calls every tool with the caller\'s key; progress; errors as results', async () => {
    await withClient(httpClient(kiln.url, a.agentKey), (client) => exerciseEveryTool(client, a, b));
    // The audit names the agent as the actor of what its MCP calls did.
    const audit = await a.admin.audit.list({ action: 'job.create', limit: 5 });
    expect(audit.items[0]).toMatchObject({ actor_id: a.agent.id });
  }, 120_000);

  it('stdio: `kiln mcp` with KILN_URL and KILN_API_KEY lists and calls every tool', async () => {
    await withClient(stdioClient(kiln.url, a.agentKey), (client) => exerciseEveryTool(client, a, b));
  }, 120_000);

  it('refuses without a key: /mcp answers 401 problem+json, `kiln mcp` exits with the auth code; a wrong key is a tool error', async () => {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } };
    for (const authorization of [undefined, 'Bearer kiln_nope_0000']) {
      const res = await fetch(`${kiln.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify(init),
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect((await res.json()).code).toBe('UNAUTHORIZED');
    }
    await expect(httpClient(kiln.url, undefined)).rejects.toThrow();
    const runnerRefused = await fetch(`${kiln.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${kiln.runnerToken}` },
      body: JSON.stringify(init),
    });
    expect(runnerRefused.status).toBe(403);
    // A body past a job's limit (20 MiB) is refused from its declared length, before any of it is read.
    const huge = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${kiln.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(21 * 1024 * 1024), authorization: `Bearer ${a.agentKey}` },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.on('error', reject);
      req.write('{"jsonrpc":');
    });
    expect(huge.status).toBe(413);
    expect(JSON.parse(huge.body).code).toMatch(/^[A-Z_]+$/);
    const get = await fetch(`${kiln.url}/mcp`, { headers: { authorization: `Bearer ${a.agentKey}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');

    const noKey = spawnSync(process.execPath, [CLI, 'mcp'], { env: { PATH: process.env.PATH ?? '', KILN_URL: kiln.url }, input: '', encoding: 'utf8' });
    expect(noKey.status).toBe(122);
    expect(noKey.stderr).toContain('KILN_API_KEY');
    expect(noKey.stdout).toBe('');

    // A revoked key over stdio: the server starts, and each call answers UNAUTHORIZED as a result.
    const spare = await a.admin.agents.createKey(a.agent.id);
    await a.admin.keys.revoke(spare.id);
    await withClient(stdioClient(kiln.url, spare.key), async (client) => {
      expect((await refused(client, 'list_languages', {})).code).toBe('UNAUTHORIZED');
    });
  }, 60_000);

  it('bounds MCP calls in flight per key (429 past the cap) without holding up another key', async () => {
    const clients = await Promise.all(Array.from({ length: 9 }, () => httpClient(kiln.url, a.agentKey)));
    const other = await httpClient(kiln.url, b.agentKey);
    try {
      const slow = clients.slice(0, 8).map((c) => call(c, 'run_code', { language: 'bash', code: 'sleep 20', wait_seconds: 3 }));
      // Let the eight reach the server before the ninth.
      await new Promise((r) => setTimeout(r, 800));
      await expect(call(clients[8]!, 'list_languages', {})).rejects.toThrow(/429|RATE_LIMITED|in flight/);
      expect((await ok(other, 'list_languages', {})).body.languages.length).toBeGreaterThan(0);
      // Another key's cancellations, for every request id the eight could have, cancel none of them.
      for (let id = 0; id < 12; id++) {
        const res = await fetch(`${kiln.url}/mcp`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${b.agentKey}` },
          body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id } }),
        });
        expect(res.status).toBe(202);
      }
      const answers = await Promise.all(slow);
      for (const { body } of answers) expect(['queued', 'running']).toContain(body.status);
      for (const { body } of answers) await ok(clients[0]!, 'cancel_job', { job_id: body.job_id });
      // Once they ended, the key has room again.
      expect((await ok(clients[8]!, 'list_languages', {})).body.languages.length).toBeGreaterThan(0);
      // A batch counts as the calls it holds: nine at once are refused whole.
      const batch = await fetch(`${kiln.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${a.agentKey}` },
        body: JSON.stringify(Array.from({ length: 9 }, (_, id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'run_code', arguments: { language: 'bash', code: 'sleep 20' } } }))),
      });
      expect(batch.status).toBe(429);
      expect(await batch.json()).toMatchObject({ code: 'RATE_LIMITED', reason: 'mcp_in_flight' });
    } finally {
      await Promise.all([...clients, other].map((c) => c.close()));
    }
  }, 60_000);
});
