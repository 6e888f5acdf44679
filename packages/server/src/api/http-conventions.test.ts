import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DB_KINDS } from '../store/testing.js';
import { defineRoute } from './route.js';
import { openTestApp, registerIdleRunner, seedTenant, type TestApp } from './testing.js';

/** A route as another feature adds it (workflows, sessions…): it gets the conventions without asking. */
const widgetRoute = defineRoute({
  method: 'POST',
  url: '/v1/widgets',
  summary: 'Make a widget',
  tag: 'widgets',
  auth: 'key',
  body: z.strictObject({ name: z.string().min(1).max(10) }),
  response: z.object({ name: z.string() }),
  successStatus: 201,
  handler: async ({ body }) => ({ name: body.name }),
});

/** One raw HTTP/1.1 exchange on its own socket: what a client that is not Node's would send. */
function rawExchange(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 5 s')), 5000);
    socket.on('data', (b) => chunks.push(b));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.write(head);
  });
}

function rawJson(port: number, path: string, key: string, body: Buffer, contentType = 'application/json') {
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': contentType, 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe.each(DB_KINDS)('HTTP as clients expect (%s)', (kind) => {
  let t: TestApp;
  let acme: Awaited<ReturnType<typeof seedTenant>>;
  let port: number;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-http-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir, fleet: { maxWaitMs: 300 } }, extraRoutes: [widgetRoute] });
    acme = await seedTenant(t);
    await registerIdleRunner(t);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a wrong method with 405 and Allow, on every route', async () => {
    const res = await t.call('PUT', '/v1/jobs', acme.agentKey, {});
    expect(res.statusCode).toBe(405);
    expect(res.headers['allow']).toBe('GET, HEAD, POST');
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ code: 'METHOD_NOT_ALLOWED', type: '/errors/method-not-allowed' });
    const item = await t.call('POST', '/v1/agents/agt_x', acme.tenantKey, {});
    expect(item.statusCode).toBe(405);
    expect(item.headers['allow']).toBe('GET, HEAD, PATCH');
  });

  it('gives a route another feature defines the same conventions and OpenAPI description', async () => {
    const wrong = await t.call('GET', '/v1/widgets', acme.agentKey);
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers['allow']).toBe('POST');
    const text = await t.app.inject({ method: 'POST', url: '/v1/widgets', headers: { authorization: `Bearer ${acme.agentKey}`, 'content-type': 'text/plain' }, payload: 'x' });
    expect(text.statusCode).toBe(415);
    expect((await t.call('POST', '/v1/widgets', acme.agentKey, { name: 'w' })).statusCode).toBe(201);
    const op = t.app.kiln.openapi.paths as Record<string, any>;
    expect(op['/v1/widgets'].post.operationId).toBe('createWidget');
    expect(Object.keys(op['/v1/widgets'].post.responses)).toEqual(['201', '400', '401', '403', '413', '415', '429']);
    expect(op['/v1/widgets'].post.requestBody.content['application/json'].schema.$ref).toBe('#/components/schemas/CreateWidgetRequest');
  });

  it('answers an unknown method (QUERY) with a problem+json 405, not 400', async () => {
    const answer = await rawExchange(port, 'QUERY /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 (405|501) /);
    expect(answer).toMatch(/content-type: application\/problem\+json/i);
    expect(answer).toMatch(/"code":"METHOD_NOT_ALLOWED"/);
  });

  it('answers oversized headers with a problem+json 431', async () => {
    const answer = await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).toMatch(/content-type: application\/problem\+json/i);
    expect(answer).toMatch(/"code":"HEADERS_TOO_LARGE"/);
  });

  it('refuses a non-JSON content type with 415, naming the header', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/jobs', headers: { authorization: `Bearer ${acme.agentKey}`, 'content-type': 'text/plain' }, payload: 'print(1)' });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', field: 'headers.content-type' });
  });

  it('names the limit in a 413; a job body may be larger than other bodies (its code may be 8 MiB)', async () => {
    const big = await t.call('POST', '/v1/agents', acme.tenantKey, { name: 'x'.repeat(2 * 1024 * 1024) });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', limit_bytes: 1024 * 1024 });
    expect(big.json().detail).toMatch(/limit of 1 MiB/);
    const code = `# ${'x'.repeat(8 * 1024 * 1024 - 10)}\n`;
    const job = await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code });
    expect(job.statusCode).toBe(201);
    const tooMuch = await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code, stdin: 'x'.repeat(1024) });
    expect(tooMuch.statusCode).toBe(400);
    expect(tooMuch.json().detail).toMatch(/at most 8388608 characters together/);
  });

  it('answers ?wait=true that times out with 202 and Location', async () => {
    const res = await t.call('POST', '/v1/jobs?wait=true&timeout_ms=50', acme.agentKey, { language: 'python', code: 'print(1)' });
    expect(res.statusCode).toBe(202);
    expect(res.headers['location']).toBe(`/v1/jobs/${res.json().id}`);
    expect(res.json().status).toBe('queued');
  });

  it('accepts decimal digits only in integer query parameters', async () => {
    for (const bad of ['', '0x10', '1e3', '+5', '-1', '1.5', ' 5']) {
      const res = await t.call('GET', `/v1/jobs?limit=${encodeURIComponent(bad)}`, acme.agentKey);
      expect(res.statusCode, `limit=${bad}`).toBe(400);
      expect(res.json()).toMatchObject({ code: 'VALIDATION_FAILED', field: 'query.limit' });
      expect(res.json().detail).toMatch(/decimal digits/);
    }
    const empty = await t.call('POST', '/v1/jobs?wait=true&timeout_ms=', acme.agentKey, { language: 'python', code: 'print(1)' });
    expect(empty.statusCode).toBe(400);
    expect(empty.json().field).toBe('query.timeout_ms');
    expect((await t.call('GET', '/v1/jobs?limit=007', acme.agentKey)).statusCode).toBe(200);
  });

  it('says what a field needs instead of zod\'s wording', async () => {
    const env = await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: '', env: { '1BAD': 'x' } });
    expect(env.statusCode).toBe(400);
    expect(env.json().detail).toMatch(/environment variable name: a letter or "_"/);
    expect(env.json().detail).not.toMatch(/Invalid key in record/);
    const type = await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 5 });
    expect(type.json().detail).toBe('body.code: must be a string');
    const missing = await t.call('POST', '/v1/agents', acme.tenantKey, {});
    expect(missing.json().detail).toBe('body.name: is required (string)');
  });

  it('refuses invalid UTF-8 with a clear 400 and stores nothing', async () => {
    const before = (await t.call('GET', '/v1/agents', acme.tenantKey)).json().items.length;
    const body = Buffer.concat([Buffer.from('{"name":"bad'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const res = await rawJson(port, '/v1/agents', acme.tenantKey, body);
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/not valid UTF-8/);
    expect((await t.call('GET', '/v1/agents', acme.tenantKey)).json().items.length).toBe(before);
  });

  it('refuses a __proto__ key with a message that names it', async () => {
    const res = await rawJson(port, '/v1/agents', acme.tenantKey, Buffer.from('{"name":"a","__proto__":{"x":1}}'));
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/"__proto__" is not allowed/);
    expect(res.body.detail).not.toMatch(/not valid JSON/);
  });

  it('cancels idempotently: a finished job is answered 200, unchanged', async () => {
    const job = (await t.call('POST', '/v1/jobs', acme.agentKey, { language: 'python', code: 'print(1)' })).json();
    const first = await t.call('POST', `/v1/jobs/${job.id}/cancel`, acme.agentKey);
    expect(first.statusCode).toBe(200);
    const again = await t.call('POST', `/v1/jobs/${job.id}/cancel`, acme.agentKey);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
  });

  it('serves the page each problem type names', async () => {
    const problem = (await t.call('GET', '/v1/jobs/job_missing', acme.agentKey)).json();
    expect(problem.type).toBe('/errors/not-found');
    const page = await t.call('GET', problem.type);
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('NOT_FOUND');
    expect((await t.call('GET', '/errors/no-such-code')).statusCode).toBe(404);
  });
});
