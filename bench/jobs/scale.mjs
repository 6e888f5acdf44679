#!/usr/bin/env node
// The million-row run: the hot path measured with 1,000 stored jobs, then again after seeding up to
// 1,000,000 (each with its audit events and its ended sandbox), in one run against the real `kiln up` on SQLite. Measured:
// submission (POST /v1/jobs), a whole job with wait (submission + claim + run + report), GET
// /v1/jobs/{id}, the list (first page, a keyset page deep down, filtered by status) and /metrics.
//   node bench/jobs/scale.mjs [--rows 1000000] [--samples 100]
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startKilnUp } from '../support/kiln-up.mjs';
import { loadAverage } from '../support/proc.mjs';

const { values: flags } = parseArgs({
  options: { rows: { type: 'string', default: '1000000' }, samples: { type: 'string', default: '100' } },
});
const targetRows = Number(flags.rows);
const samples = Number(flags.samples);
const SMALL = 1000;
const BATCH = 50_000;

const p50 = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Clones a finished job and its audit events `count` times, ids made to sort before any real one. */
function seed(file, templateJobId, from, count) {
  const db = new Database(file, { timeout: 30_000 });
  const jobCols = db.prepare('select name from pragma_table_info(?)').all('jobs').map((c) => c.name);
  const auditCols = db.prepare('select name from pragma_table_info(?)').all('audit_events').map((c) => c.name);
  const pick = (cols, overrides) => cols.map((c) => overrides[c] ?? `t.${c}`).join(', ');
  const seqId = (kind) => `'${kind}_00' || printf('%024d', n.i)`;
  const jobs = db.prepare(
    `with recursive n(i) as (select ? union all select i + 1 from n where i < ?)
     insert into jobs (${jobCols.join(', ')}) select ${pick(jobCols, { id: seqId('job') })} from n, jobs t where t.id = ?`,
  );
  // Their audit events: three per job (create, lease, complete), on a chain of their own so the
  // tenant's real chain stays verifiable.
  const events = db.prepare(
    `with recursive n(i) as (select ? union all select i + 1 from n where i < ?)
     insert into audit_events (${auditCols.join(', ')})
     select ${pick(auditCols, {
       id: "'aud_00' || printf('%024d', n.i * 3 + ?)",
       chain_id: "'bench-seed'",
       chain_seq: 'n.i * 3 + ?',
       resource_id: seqId('job'),
     })} from n, (select * from audit_events where resource_id = ? limit 1) t`,
  );
  // And one ended sandbox instance per job, as every run leaves (the metrics count them by status).
  const sandboxCols = db.prepare('select name from pragma_table_info(?)').all('sandbox_instances').map((c) => c.name);
  const sandboxes = db.prepare(
    `with recursive n(i) as (select ? union all select i + 1 from n where i < ?)
     insert into sandbox_instances (${sandboxCols.join(', ')})
     select ${pick(sandboxCols, { id: seqId('sbx'), job_id: seqId('job') })} from n, (select * from sandbox_instances where job_id = ? limit 1) t`,
  );
  for (let start = from; start < from + count; start += BATCH) {
    const end = Math.min(from + count, start + BATCH) - 1;
    db.transaction(() => {
      jobs.run(start, end, templateJobId);
      for (let k = 0; k < 3; k++) events.run(start, end, k, k, templateJobId);
      sandboxes.run(start, end, templateJobId);
    })();
  }
  db.close();
}

/**
 * The seeding blocks this process's event loop for minutes: the server closes the idle keep-alive
 * sockets meanwhile, and fetch would hand the first requests a dead one ("other side closed").
 */
async function dropStaleConnections(url) {
  for (let i = 0; i < 16; i++) {
    try {
      await fetch(`${url}/healthz`).then((r) => r.arrayBuffer());
      return;
    } catch {
      // that socket was closed by the server; the pool drops it and the next try opens another
    }
  }
}

async function measure(url, key) {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ language: 'python', code: 'print(1)' });
  const timed = async (fn) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const call = async (path, init = {}) => {
    const res = await fetch(`${url}${path}`, { headers, ...init });
    const json = await res.json();
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const out = { submit: [], job: [], get: [], list: [], listDeep: [], listStatus: [], metrics: [] };
  let lastId;
  let deepCursor;
  for (let i = 0; i < samples; i++) {
    out.job.push(await timed(async () => (lastId = (await call('/v1/jobs?wait=true', { method: 'POST', body })).id)));
    out.get.push(await timed(() => call(`/v1/jobs/${lastId}`)));
    out.list.push(
      await timed(async () => {
        const first = await call('/v1/jobs?limit=50');
        deepCursor ??= first.next_cursor;
      }),
    );
    out.listDeep.push(await timed(() => call(`/v1/jobs?limit=50&cursor=${encodeURIComponent(deepCursor)}`)));
    out.listStatus.push(await timed(() => call('/v1/jobs?status=succeeded&limit=50')));
    out.metrics.push(await timed(() => fetch(`${url}/metrics`).then((r) => r.text())));
  }
  // Submissions apart, with no runner time in between: a burst the runner drains afterwards.
  for (let i = 0; i < samples; i++) out.submit.push(await timed(() => call('/v1/jobs', { method: 'POST', body })));
  for (let i = 0; i < 600; i++) {
    if ((await call('/v1/jobs?status=queued&limit=1')).items.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, p50(v)]));
}

async function main() {
  // Seeded rows are one tenant's: the worst case for its lists; the queue quota is lifted for the bursts.
  const up = await startKilnUp({ env: { KILN_QUOTA_MAX_QUEUED_JOBS: '100000', KILN_QUOTA_RATE_PER_SECOND: '100000', KILN_QUOTA_RATE_BURST: '100000' } });
  const file = join(up.dir, 'kiln.db');
  try {
    const headers = { authorization: `Bearer ${up.tenantKey}`, 'content-type': 'application/json' };
    const template = await fetch(`${up.url}/v1/jobs?wait=true`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ language: 'python', code: 'print(1)' }),
    }).then((r) => r.json());
    let seeded = 0;
    const grow = (to) => {
      const t = performance.now();
      seed(file, template.id, seeded + 1, to - seeded);
      console.error(`seeded ${to - seeded} jobs (+ ${3 * (to - seeded)} audit events, ${to - seeded} sandboxes) in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      seeded = to;
    };
    grow(SMALL);
    const load1 = loadAverage();
    // Once unrecorded first: the small set must not pay the fresh process's JIT and caches, which made
    // earlier runs' ratios look better than they were (0.43 for submission).
    await measure(up.url, up.tenantKey);
    const small = await measure(up.url, up.tenantKey);
    grow(targetRows);
    await dropStaleConnections(up.url);
    const load2 = loadAverage();
    const large = await measure(up.url, up.tenantKey);
    const lines = [
      `kiln million-row run, ${new Date().toISOString()}: p50 of ${samples} samples at ${SMALL} and ${targetRows} stored jobs (SQLite)`,
      `  load average ${load1} (small) / ${load2} (large): the machine is shared, compare within the run`,
      `  ${'what'.padEnd(34)}${`at ${SMALL}`.padStart(12)}${`at ${targetRows}`.padStart(14)}${'ratio'.padStart(8)}`,
    ];
    const names = {
      submit: 'submission (POST /v1/jobs)',
      job: 'job with wait (submit+claim+run)',
      get: 'GET /v1/jobs/{id}',
      list: 'list, first page',
      listDeep: 'list, keyset page (cursor)',
      listStatus: 'list ?status=succeeded',
      metrics: 'GET /metrics',
    };
    for (const [k, name] of Object.entries(names)) {
      const ratio = large[k] / small[k];
      lines.push(`  ${name.padEnd(34)}${`${small[k].toFixed(1)} ms`.padStart(12)}${`${large[k].toFixed(1)} ms`.padStart(14)}${ratio.toFixed(2).padStart(8)}${ratio <= 1.2 ? '' : '  (> 1.2)'}`);
    }
    console.log(lines.join('\n'));
  } finally {
    await up.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
