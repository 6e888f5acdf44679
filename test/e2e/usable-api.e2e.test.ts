import { randomBytes } from 'node:crypto';
import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem, type DbKind } from './support/kiln-system.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each<DbKind>(['sqlite', 'postgres'])('logs, metrics and streamed output of real jobs (%s)', (db) => {
  const kiln = new KilnSystem(db, { KILN_LOG_LEVEL: 'info', KILN_LOG_FORMAT: 'json' });
  let agent: KilnClient;
  let admin: KilnClient;
  let tenantId: string;
  let agentId: string;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const t = await kiln.newTenant();
    agent = t.agentClient;
    admin = t.admin;
    tenantId = t.tenant.id;
    agentId = t.agent.id;
  }, 180_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('streams Python output as it is printed: a watcher sees the first line while the job still runs', async () => {
    const code = ['import time', 'print("first line")', 'time.sleep(20)', 'print("second line")'].join('\n');
    const job = await agent.jobs.create({ language: 'python', code, limits: { wall_time_ms: 25_000 } });
    let sawFirstWhileRunning = false;
    for await (const event of agent.jobs.events(job.id, { timeoutMs: 40_000 })) {
      if (event.type === 'output' && event.chunk.data.includes('first line')) {
        sawFirstWhileRunning = (await agent.jobs.get(job.id)).status === 'running';
        await agent.jobs.cancel(job.id);
      }
      if (event.type === 'end') {
        expect(event.job.status).toBe('canceled');
        break;
      }
    }
    expect(sawFirstWhileRunning, 'the first line reached the watcher before the job ended').toBe(true);
  }, 60_000);

  it('writes one info line per job end with who, what and how long, and never the secret or the code', async () => {
    const secret = `sekrit-${randomBytes(8).toString('hex')}`;
    const marker = `CODE_MARKER_${randomBytes(8).toString('hex')}`;
    const job = await agent.jobs.createAndWait({
      language: 'python',
      code: `# ${marker}\nimport os\nprint(len(os.environ["API_TOKEN"]))`,
      secret_env: { API_TOKEN: secret },
    });
    expect(job.verdict).toBe('ok');
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 50 && !line; i++) {
      line = kiln
        .logs()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.job_id === job.id && l.msg === 'job ended: ok');
      if (!line) await sleep(100);
    }
    expect(line).toMatchObject({ level: 30, tenant_id: tenantId, agent_id: agentId, language: 'python', verdict: 'ok', status: 'succeeded' });
    expect(typeof line!.queue_ms).toBe('number');
    expect(typeof line!.run_ms).toBe('number');
    const logs = kiln.logs();
    expect(logs).not.toContain(secret);
    expect(logs).not.toContain(marker);
  }, 60_000);

  it('exposes metrics worth charting after a job, with bounded labels', async () => {
    const job = await agent.jobs.createAndWait({ language: 'python', code: 'print(1)' });
    const text = await (await fetch(`${kiln.url}/metrics`)).text();
    expect(text).toMatch(/^kiln_job_queue_wait_seconds_bucket\{le="[^"]+",language="python",verdict="ok"\} \d+$/m);
    expect(text).toMatch(/^kiln_job_run_duration_seconds_count\{language="python",verdict="ok"\} [1-9]\d*$/m);
    expect(text).toMatch(/^kiln_jobs_completed_total\{verdict="ok"\} [1-9]\d*$/m);
    expect(text).toMatch(/^kiln_jobs_completed_total\{verdict="canceled"\} [1-9]\d*$/m);
    expect(text).toMatch(/^kiln_job_leases_total\{language="python"\} [1-9]\d*$/m);
    for (const name of ['kiln_job_lease_expiries_total', 'kiln_job_requeues_total', 'kiln_runner_heartbeats_late_total', 'kiln_live_output_dropped_bytes_total']) {
      expect(text).toContain(`# TYPE ${name} counter`);
    }
    expect(text).toContain('# TYPE kiln_stream_watchers gauge');
    expect(text).toMatch(/^kiln_http_request_duration_seconds_count\{method="GET",route="\/v1\/jobs\/:id"\} \d+$/m);
    // No label value is an id: ids of jobs, tenants and runners never reach the metrics.
    expect(text).not.toContain(job.id);
    expect(text).not.toContain(tenantId);
    expect(text).not.toMatch(/\{[^}]*"(job|ten|agt|run|key)_[0-9a-z]{26}"/);
  }, 60_000);

  it('lists keys through the SDK without their secrets', async () => {
    const keys = await admin.keys.list();
    expect(keys.items.length).toBeGreaterThanOrEqual(2);
    const agentKeys = await admin.agents.listKeys(agentId);
    expect(agentKeys.items).toHaveLength(1);
    expect(agentKeys.items[0]!.last_used_at).not.toBeNull();
    expect(JSON.stringify(keys)).not.toMatch(/"key":/);
  }, 30_000);
});
