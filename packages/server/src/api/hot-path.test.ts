import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, seedTenant, TEST_ADMIN_KEY, TEST_RUNNER_TOKEN, type TestApp } from './testing.js';

// The hot path of a job (issue 14), counted and explained — never timed.

/**
 * Statements one small job may cost on SQLite: submit, lease, completion report and the waiting answer.
 * A regression guard at what the path costs today (58 before issue 14's cuts, 54 → 41 in its second pass,
 * 37 in its third: one seek for the queue's head, the audit head moved by trigger; 32 in its fourth: job
 * flags skip the workflow, secrets and Judge0 lookups, the waiting answer reads no row, no lock statement
 * before the inline blobs' tracking insert); the target is 10.
 */
const QUERIES_PER_JOB = 32;

const inline = (text: string) => ({
  checksum: `sha256:${createHash('sha256').update(text).digest('hex')}`,
  size_bytes: Buffer.byteLength(text),
  content_base64: Buffer.from(text).toString('base64'),
});

interface Statement {
  sql: string;
  parameters: readonly unknown[];
}

async function openBed(kind: 'sqlite' | 'postgres') {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-hot-path-'));
  const seen: Statement[] = [];
  let recording = false;
  const t = await openTestApp(kind, {
    jobs: { artifactsDir: dir },
    onQuery: (text, parameters) => {
      if (recording) seen.push({ sql: text, parameters });
    },
  });
  const runner = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
    name: 'lean', zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3.11.2' }],
  });
  const runnerKey = runner.json().credential as string;
  const seeded = await seedTenant(t);
  return {
    t,
    runnerKey,
    ...seeded,
    /** Runs `fn` and answers the statements it ran. */
    async record(fn: () => Promise<void>): Promise<Statement[]> {
      seen.length = 0;
      recording = true;
      try {
        await fn();
      } finally {
        recording = false;
      }
      return [...seen];
    },
    async close() {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
type Bed = Awaited<ReturnType<typeof openBed>>;

/** One job as a runner sees it: submitted with wait, leased, completed with its output inline, answered. */
async function oneJob(b: Bed): Promise<string> {
  const waiting = b.t.call('POST', '/v1/jobs?wait=true', b.agentKey, { language: 'python', code: 'print(1)' });
  let leases: { job_id: string; attempt: number }[] = [];
  for (let i = 0; i < 200 && leases.length === 0; i++) {
    leases = (await b.t.call('POST', '/v1/runner/lease', b.runnerKey, { free_slots: 1, wait_ms: 0 })).json().leases;
  }
  const [lease] = leases;
  const done = await b.t.call('POST', `/v1/runner/leases/${lease!.job_id}/complete`, b.runnerKey, {
    attempt: lease!.attempt,
    verdict: 'ok',
    exit_status: { code: 0, signal: null },
    resource_usage: { cpu_time_ms: 5, wall_time_ms: 7, memory_peak_bytes: 1024 },
    stdout: inline('1\n'),
    stderr: inline(''),
    artifacts: [],
    rejected_artifacts: [],
    error: null,
  });
  expect(done.statusCode).toBe(204);
  const answer = (await waiting).json();
  expect(answer).toMatchObject({ status: 'succeeded', stdout: '1\n' });
  return answer.id as string;
}

/** The tables that grow without bound: no hot statement may read all of them. */
const GROWING = ['jobs', 'audit_events', 'sandbox_instances'];

/** What in a statement's plan reads a growing table whole (empty when every access is an index seek). */
async function fullScans(b: Bed, kind: 'sqlite' | 'postgres', s: Statement): Promise<string[]> {
  if (kind === 'sqlite') {
    const plan = await b.t.db.store.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${s.sql}`, [...s.parameters]));
    // "SCAN t" (with or without an index) walks the whole table or index; "SEARCH t USING ..." seeks.
    return plan.rows.map((r) => r.detail).filter((d) => GROWING.some((t) => new RegExp(`^SCAN (${t}|j|u)\\b`).test(d) && refersTo(s.sql, t)));
  }
  // With sequential scans priced out, a Seq Scan left in the plan is one no index can replace.
  return b.t.db.store.transaction(async (tx) => {
    await sql`set local enable_seqscan = off`.execute(tx.db);
    const plan = await tx.db.executeQuery<{ 'QUERY PLAN': unknown }>(CompiledQuery.raw(`explain (format json) ${s.sql}`, [...s.parameters]));
    const found: string[] = [];
    const walk = (node: Record<string, unknown>) => {
      if (node['Node Type'] === 'Seq Scan' && GROWING.includes(String(node['Relation Name']))) found.push(`Seq Scan on ${String(node['Relation Name'])}`);
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    const doc = plan.rows[0]!['QUERY PLAN'];
    walk((Array.isArray(doc) ? doc[0] : JSON.parse(String(doc))[0]).Plan);
    return found;
  });
}

const refersTo = (text: string, table: string) => new RegExp(`\\b"?${table}"?\\b`).test(text);

describe('the work per job on sqlite', () => {
  let b: Bed;
  beforeAll(async () => {
    b = await openBed('sqlite');
  });
  afterAll(() => b.close());

  it(`a small job costs at most ${QUERIES_PER_JOB} statements: submit, lease, report and the waiting answer`, async () => {
    await oneJob(b); // the first job of a key and a runner fills what is cached
    const statements = (await b.record(async () => void (await oneJob(b)))).filter((s) => !/^(begin|commit)/i.test(s.sql));
    expect(statements.length, statements.map((s) => s.sql.replace(/\s+/g, ' ').slice(0, 160)).join('\n')).toBeLessThanOrEqual(QUERIES_PER_JOB);
  });
});

describe.each(DB_KINDS)('hot-path statements use indexes on %s', (kind) => {
  let b: Bed;
  beforeAll(async () => {
    b = await openBed(kind);
    for (let i = 0; i < 3; i++) await oneJob(b);
  });
  afterAll(() => b.close());

  it('submission, claim, completion, GET, lists by keyset and /metrics never read all jobs or all audit events', async () => {
    const statements = await b.record(async () => {
      const id = await oneJob(b);
      expect((await b.t.call('GET', `/v1/jobs/${id}`, b.agentKey)).statusCode).toBe(200);
      const first = (await b.t.call('GET', '/v1/jobs?limit=2', b.tenantKey)).json();
      expect(first.items).toHaveLength(2);
      expect((await b.t.call('GET', `/v1/jobs?limit=2&cursor=${first.next_cursor}`, b.tenantKey)).statusCode).toBe(200);
      expect((await b.t.call('GET', '/v1/jobs?status=queued&limit=5', b.tenantKey)).statusCode).toBe(200);
      expect((await b.t.call('GET', '/v1/jobs?limit=5', b.agentKey)).statusCode).toBe(200);
      expect((await b.t.call('GET', `/v1/audit-events?resource_id=${id}&limit=5`, b.tenantKey)).statusCode).toBe(200);
      expect((await b.t.call('GET', '/metrics', TEST_ADMIN_KEY)).body).toMatch(/^kiln_jobs\{status="succeeded"\} 4$/m);
    });
    const reads = statements.filter((s) => !/^\s*(begin|commit|insert into "[a-z_]+" \(.*\) values)/is.test(s.sql) && GROWING.some((t) => refersTo(s.sql, t)));
    expect(reads.length).toBeGreaterThan(5);
    const offenders: string[] = [];
    for (const s of reads) {
      const scans = await fullScans(b, kind, s);
      if (scans.length > 0) offenders.push(`${scans.join(', ')}: ${s.sql.replace(/\s+/g, ' ').slice(0, 200)}`);
    }
    expect(offenders).toEqual([]);
  });
});
