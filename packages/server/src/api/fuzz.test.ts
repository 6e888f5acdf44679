import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { valueFor, type Pools } from './openapi-arbitraries.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

// Every route of the OpenAPI document, with requests generated from its own schemas (plus junk), sent
// with each role's key at the real app (in-process, real database). Whatever arrives, the answer is
// never a 5xx, an error is always problem+json with a stable code, and nothing crashes. Routes added
// later are picked up from the document by themselves.

type JsonSchema = Record<string, unknown>;
interface Operation {
  method: string;
  path: string;
  parameters: { name: string; in: 'path' | 'query'; required: boolean; schema: JsonSchema }[];
  body: JsonSchema | undefined;
}

/** Runs per database, and a time bound that holds them well under a minute on a busy 2-core machine. */
const RUNS: Record<string, number> = { sqlite: 2500, postgres: 1200 };
const TIME_LIMIT_MS = 30_000;
/** A request still open after this is a long poll or a stream: it is ended, which is not a failure. */
const REQUEST_TIMEOUT_MS = 2000;

/** The document with its `$ref`s to components replaced by the schemas (it has no cycles). */
function dereferenced(document: Record<string, unknown>): Record<string, unknown> {
  const schemas = ((document.components as JsonSchema | undefined)?.schemas ?? {}) as Record<string, JsonSchema>;
  const resolve = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(resolve);
    if (value === null || typeof value !== 'object') return value;
    const ref = (value as JsonSchema).$ref;
    if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) return resolve(schemas[ref.slice(21)]);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v)]));
  };
  return resolve(document) as Record<string, unknown>;
}

function operationsOf(document: Record<string, unknown>): Operation[] {
  const paths = dereferenced(document).paths as Record<string, Record<string, JsonSchema>>;
  const operations: Operation[] = [];
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const content = (op.requestBody as JsonSchema | undefined)?.content as Record<string, { schema: JsonSchema }> | undefined;
      operations.push({
        method: method.toUpperCase(),
        path,
        parameters: (op.parameters ?? []) as Operation['parameters'],
        body: content?.['application/json']?.schema,
      });
    }
  }
  return operations;
}

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

describe.each(DB_KINDS)('every OpenAPI route, fuzzed from its schemas, on %s', (kind) => {
  let t: TestApp;
  let artifactsDir: string;
  let keys: Record<string, string | undefined>;
  let pools: Pools;

  beforeAll(async () => {
    artifactsDir = mkdtempSync(join(tmpdir(), 'kiln-fuzz-'));
    // Long polls are kept short so no request lingers: `wait`, heartbeats.
    t = await openTestApp(kind, {
      bodyLimitBytes: 64 * 1024,
      jobs: { artifactsDir, fleet: { maxWaitMs: 50, heartbeatIntervalMs: 100 } },
    });
    const a = await seedTenant(t, 'fuzz-a');
    const b = await seedTenant(t, 'fuzz-b');
    const policy = (await t.call('GET', '/v1/policies', a.tenantKey)).json().items[0].id as string;
    const registered = (
      await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
        name: 'fuzz-node', zone: 'z', capacity: 4, address: null, languages: [{ name: 'python', version: '3.11.2' }],
      })
    ).json() as { runner_id: string; credential: string };
    const runner = registered.runner_id;
    // One ended job with an artifact, so job and artifact routes reach real rows (no running job is
    // left for an event stream to wait on).
    const job = (await t.call('POST', '/v1/jobs', a.agentKey, { language: 'python', code: 'print(1)' })).json().id as string;
    await t.call('POST', '/v1/runner/lease', registered.credential, { runner_id: runner, free_slots: 1, wait_ms: 0 });
    const blob = (text: string) => ({ checksum: sha256(Buffer.from(text)), size_bytes: text.length, content_base64: Buffer.from(text).toString('base64') });
    await t.call('POST', `/v1/runner/leases/${job}/complete`, registered.credential, {
      attempt: 1, verdict: 'ok', exit_status: { code: 0, signal: null },
      resource_usage: { cpu_time_ms: 1, wall_time_ms: 1, memory_peak_bytes: 1 },
      stdout: blob('1\n'), stderr: blob(''), artifacts: [{ name: 'out/x', ...blob('x') }],
    });
    const artifact = (await t.call('GET', `/v1/jobs/${job}`, a.agentKey)).json().output_refs.artifacts[0] as string;
    keys = {
      operator: TEST_ADMIN_KEY,
      tenant: a.tenantKey,
      agent: a.agentKey,
      'runner join token': TEST_RUNNER_TOKEN,
      runner: registered.credential,
      'other tenant': b.tenantKey,
      none: undefined,
      garbage: 'kiln_tenant_key_00000000000000000000000000_' + '0'.repeat(64),
    };
    pools = {
      ids: [a.tenant.id, b.tenant.id, a.agent.id, b.agent.id, a.agentKeyId, a.tenantKeyId, policy, runner, job, artifact, 'python', 'z',
        'ten_00000000000000000000000000'],
    };
  }, 60_000);
  afterAll(async () => {
    await t.close();
    rmSync(artifactsDir, { recursive: true, force: true });
  });

  it('never answers 5xx, always problem+json for errors, and never crashes', async () => {
    const operations = operationsOf(t.app.kiln.openapi);
    expect(operations.length).toBeGreaterThan(30);

    const request = fc.constantFrom(...operations).chain((op) => {
      const pathParams = op.parameters.filter((p) => p.in === 'path');
      const queryParams = op.parameters.filter((p) => p.in === 'query');
      const pathValue = (p: Operation['parameters'][number]) =>
        fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...pools.ids) }, { weight: 1, arbitrary: valueFor(p.schema, pools) });
      const bodies = fc.oneof(
        { weight: 6, arbitrary: valueFor(op.body ?? {}, pools).map((v) => ({ kind: 'json' as const, value: v })) },
        { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
        { weight: 1, arbitrary: fc.string({ maxLength: 64 }).map((s) => ({ kind: 'text' as const, value: s })) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 256 }).map((b) => ({ kind: 'bytes' as const, value: Buffer.from(b) })) },
      );
      return fc.record({
        op: fc.constant(op),
        path: fc.tuple(...pathParams.map(pathValue)),
        query: fc.tuple(...queryParams.map((p) => fc.option(valueFor(p.schema, pools), { nil: undefined, freq: p.required ? 10 : 2 }))),
        junkQuery: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 2 }), { freq: 8 }),
        body: bodies,
        role: fc.constantFrom(...Object.keys(keys)),
        contentType: fc.option(fc.constantFrom('application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data', 'application/json; charset=utf-8'), { freq: 3 }),
      });
    });

    const statuses = new Map<number, number>();
    const reached = new Set<string>();
    let cut = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const { op } = r;
        let url = op.path;
        op.parameters.filter((p) => p.in === 'path').forEach((p, i) => {
          url = url.replace(`{${p.name}}`, encodeURIComponent(asText(r.path[i])) || '%20');
        });
        const search = new URLSearchParams();
        op.parameters.filter((p) => p.in === 'query').forEach((p, i) => {
          const v = r.query[i];
          if (v !== undefined) search.set(p.name, p.name === 'timeout_ms' || p.name === 'wait_ms' ? String(Math.min(Number(v) || 0, 50)) : asText(v));
        });
        for (const [k, v] of Object.entries(r.junkQuery ?? {})) search.append(k, v);
        const headers: Record<string, string> = {};
        const key = keys[r.role];
        if (key !== undefined) headers.authorization = `Bearer ${key}`;
        let payload: string | Buffer | undefined;
        if (r.body.kind === 'json') {
          payload = JSON.stringify(shortenPolls(r.body.value)) ?? 'null';
          headers['content-type'] = r.contentType ?? 'application/json';
        } else if (r.body.kind === 'text') {
          payload = r.body.value;
          headers['content-type'] = r.contentType ?? 'text/plain';
        } else if (r.body.kind === 'bytes') {
          payload = r.body.value;
          headers['content-type'] = r.contentType ?? 'application/octet-stream';
        }
        const target = search.size > 0 ? `${url}?${search}` : url;
        let res;
        try {
          res = await t.app.inject({
            method: op.method as 'GET',
            url: target,
            headers,
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            ...(payload === undefined ? {} : { payload }),
          });
        } catch (err) {
          if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') {
            cut += 1;
            return;
          }
          throw err; // a crash of the request pipeline
        }
        reached.add(`${op.method} ${op.path}`);
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        const where = `${op.method} ${target} as ${r.role}: ${res.statusCode} ${res.body.slice(0, 300)}`;
        expect(res.statusCode, where).toBeLessThan(500);
        // The Piston and Judge0 faces answer errors in their peers' own JSON shapes, by design.
        const compat = op.path.startsWith('/api/v2/') || op.path.startsWith('/judge0/');
        if (compat && res.statusCode >= 400 && op.method !== 'HEAD') {
          expect(res.headers['content-type'], where).toMatch(/^application\/(problem\+)?json/);
          expect(typeof res.json(), where).toBe('object');
        } else if (res.statusCode >= 400 && op.method !== 'HEAD') {
          expect(res.headers['content-type'], where).toMatch(/^application\/problem\+json/);
          const problem = res.json();
          expect(problem.code, where).toMatch(/^[A-Z_]+$/);
          expect(problem.status, where).toBe(res.statusCode);
        }
      }),
      { seed: Number(process.env.KILN_FUZZ_SEED ?? 20261201), numRuns: RUNS[kind]!, endOnFailure: true, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false },
    );
    // The generator reached past the front door, on most routes.
    for (const status of [200, 400, 401, 403, 404]) expect(statuses.get(status) ?? 0, `status ${status}`).toBeGreaterThan(0);
    expect(reached.size).toBeGreaterThan(operations.length * 0.8);
    expect(cut).toBeLessThan(50);
    // Still healthy and still consistent afterwards.
    expect((await t.call('GET', '/readyz')).statusCode).toBe(200);
    const verify = (await t.call('GET', '/v1/audit-events/verify?tenant_id=none', TEST_ADMIN_KEY)).json();
    expect(verify.ok).toBe(true);
  }, 90_000);
});

function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? '';
}

/** Long-poll knobs in bodies (`wait_ms`) are kept short so a run spends its time on many requests. */
function shortenPolls(value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value) && typeof (value as { wait_ms?: unknown }).wait_ms === 'number') {
    return { ...value, wait_ms: Math.min((value as { wait_ms: number }).wait_ms, 50) };
  }
  return value;
}
