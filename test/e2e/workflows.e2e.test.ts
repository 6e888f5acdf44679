import { createHash } from 'node:crypto';
import { DEFAULT_RULESET, type CreateWorkflowRequest, type Workflow } from '@kiln/core';
import { NotFoundError, type KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ENDED = new Set(['succeeded', 'failed', 'canceled']);

async function ended(client: KilnClient, id: string, timeoutMs = 90_000): Promise<Workflow> {
  return eventually(`workflow ${id} to end`, async () => {
    const w = await client.workflows.get(id);
    return ENDED.has(w.status) ? w : undefined;
  }, timeoutMs);
}

const py = (code: string) => ({ language: 'python', code });
const stepOf = (w: Workflow, name: string) => w.steps!.find((s) => s.name === name)!;

describe.each<DbKind>(['sqlite', 'postgres'])('workflows end to end (%s)', (db) => {
  const kiln = new KilnSystem(db);
  let admin: KilnClient;
  let agentClient: KilnClient;
  let agentA: string;
  let agentB: string;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 4 });
    const t = await kiln.newTenant();
    admin = t.admin;
    agentClient = t.agentClient;
    agentA = t.agent.id;
    agentB = (await admin.agents.create({ name: 'agent-2' })).id;
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('runs a three-step, two-agent pipeline passing a file along with its checksum', async () => {
    const created = await admin.workflows.create({
      name: 'pipeline',
      steps: [
        { name: 'fetch', agent_id: agentA, ...py('import os\nos.makedirs("out", exist_ok=True)\nopen("out/data.csv","w").write("a,b\\n1,2\\n3,4\\n")') },
        {
          name: 'clean',
          agent_id: agentB,
          language: 'node',
          code: 'const fs=require("fs");fs.mkdirSync("out",{recursive:true});fs.writeFileSync("out/clean.csv",fs.readFileSync("raw.csv","utf8").toUpperCase());',
          inputs: [{ step: 'fetch', artifact: 'out/data.csv', path: 'raw.csv' }],
        },
        { name: 'report', agent_id: agentA, language: 'bash', code: 'sha256sum clean.csv | cut -d" " -f1; cat clean.csv', inputs: [{ step: 'clean', artifact: 'out/clean.csv', path: 'clean.csv' }] },
      ],
    });
    expect(created.steps!.map((s) => [s.sequence, s.name, s.agent_id])).toEqual([
      [1, 'fetch', agentA],
      [2, 'clean', agentB],
      [3, 'report', agentA],
    ]);
    const done = await ended(admin, created.id);
    expect(done.status).toBe('succeeded');
    expect(done.steps!.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    const clean = stepOf(done, 'clean');
    const listed = await admin.artifacts.list({ owner_type: 'workflow_step', owner_id: clean.id });
    const csv = listed.items.find((a) => a.name === 'out/clean.csv')!;
    expect(csv).toBeDefined();
    const content = await admin.artifacts.download(csv.id);
    expect(content.bytes.toString()).toBe('A,B\n1,2\n3,4\n');
    expect(sha256(content.bytes)).toBe(csv.checksum);
    const report = await admin.jobs.get(stepOf(done, 'report').job_id!);
    expect(report.stdout).toBe(`${csv.checksum.slice('sha256:'.length)}\nA,B\n1,2\n3,4\n`);
    expect(report.agent_id).toBe(agentA);
  }, 120_000);

  it('runs steps side by side when `needs` allows, then the step that needs both', async () => {
    const sleeper = py('import time\ntime.sleep(2)\nprint("done")');
    const w = await admin.workflows.create({
      steps: [
        { name: 'a', ...py('print("a")') },
        { name: 'b', needs: ['a'], ...sleeper },
        { name: 'c', needs: ['a'], ...sleeper },
        { name: 'd', needs: ['b', 'c'], ...py('print("d")') },
      ],
    });
    const done = await ended(admin, w.id);
    expect(done.status).toBe('succeeded');
    const [b, c, d] = await Promise.all(['b', 'c', 'd'].map((n) => admin.jobs.get(stepOf(done, n).job_id!)));
    // b and c overlapped: each started before the other ended; d started after both ended.
    expect(b!.started_at! < c!.completed_at! && c!.started_at! < b!.completed_at!).toBe(true);
    expect(d!.requested_at >= b!.completed_at! && d!.requested_at >= c!.completed_at!).toBe(true);
  }, 120_000);

  it('fails the workflow on a failed step and cancels the rest, unless continue_on_failure', async () => {
    const failing = await admin.workflows.create({ steps: [{ name: 'boom', ...py('raise SystemExit(2)') }, { name: 'after', ...py('print(1)') }] });
    const failed = await ended(admin, failing.id);
    expect(failed.status).toBe('failed');
    expect(failed.reason).toContain('boom');
    expect(stepOf(failed, 'boom').status).toBe('failed');
    expect(stepOf(failed, 'after')).toMatchObject({ status: 'canceled', job_id: null });
    expect(stepOf(failed, 'after').reason).toContain('boom');

    const tolerant = await admin.workflows.create({
      steps: [{ name: 'boom', continue_on_failure: true, ...py('raise SystemExit(2)') }, { name: 'after', ...py('print(1)') }],
    });
    const carried = await ended(admin, tolerant.id);
    expect(carried.status).toBe('succeeded');
    expect(carried.steps!.map((s) => s.status)).toEqual(['failed', 'succeeded']);
  }, 120_000);

  it('cancels a workflow mid-run: the running job is killed, the rest never start', async () => {
    const w = await admin.workflows.create({ steps: [{ name: 'long', ...py('import time\ntime.sleep(60)') }, { name: 'next', ...py('print(1)') }] });
    await eventually('the first step to run', async () => stepOf(await admin.workflows.get(w.id), 'long').status === 'running');
    const canceled = await admin.workflows.cancel(w.id);
    expect(canceled.status).toBe('canceled');
    expect(canceled.steps!.map((s) => s.status)).toEqual(['canceled', 'canceled']);
    expect(stepOf(canceled, 'next').job_id).toBeNull();
    const job = await eventually('the job to settle canceled', async () => {
      const j = await admin.jobs.get(stepOf(canceled, 'long').job_id!);
      return j.status === 'canceled' ? j : undefined;
    });
    expect(job.status).toBe('canceled');
  }, 120_000);

  it('fails a step whose input does not exist, naming it, before any sandbox is made', async () => {
    const w = await admin.workflows.create({
      steps: [{ name: 'make', ...py('print("no files")') }, { name: 'use', ...py('print(open("x.csv").read())'), inputs: [{ step: 'make', artifact: 'out/missing.csv', path: 'x.csv' }] }],
    });
    const done = await ended(admin, w.id);
    expect(done.status).toBe('failed');
    expect(stepOf(done, 'use')).toMatchObject({ status: 'failed', job_id: null });
    expect(stepOf(done, 'use').reason).toContain('out/missing.csv');
  }, 120_000);

  it("counts inputs against the receiving step's policy: an input over its artifact size fails the step", async () => {
    const tight = await admin.policies.create({
      name: `tight-inputs-${Date.now()}`,
      ruleset: { ...DEFAULT_RULESET, artifacts: { max_count: 4, max_bytes: 1024, max_total_bytes: 4096 } },
    });
    const w = await admin.workflows.create({
      steps: [
        { name: 'big', ...py('import os\nos.makedirs("out",exist_ok=True)\nopen("out/big.bin","wb").write(b"x"*4000)') },
        { name: 'small', policy_id: tight.id, ...py('print(len(open("big.bin","rb").read()))'), inputs: [{ step: 'big', artifact: 'out/big.bin', path: 'big.bin' }] },
      ],
    });
    const done = await ended(admin, w.id);
    expect(done.status).toBe('failed');
    expect(stepOf(done, 'small')).toMatchObject({ status: 'failed', job_id: null });
    expect(stepOf(done, 'small').reason).toContain('out/big.bin');
    expect(stepOf(done, 'small').reason).toContain('input limits');
  }, 120_000);

  it('fails a step whose agent was disabled before its turn, with the reason', async () => {
    const agentC = (await admin.agents.create({ name: 'agent-3' })).id;
    const w = await admin.workflows.create({
      steps: [{ name: 'first', agent_id: agentA, ...py('import time\ntime.sleep(3)') }, { name: 'second', agent_id: agentC, ...py('print(1)') }],
    });
    await admin.agents.disable(agentC);
    const done = await ended(admin, w.id);
    expect(done.status).toBe('failed');
    expect(stepOf(done, 'second')).toMatchObject({ status: 'failed', job_id: null });
    expect(stepOf(done, 'second').reason).toContain('disabled');
  }, 120_000);

  it('checks every step before anything runs, answering the bad step with its index and field', async () => {
    const before = (await admin.jobs.list({ limit: 200 })).items.length;
    const bad = async (body: CreateWorkflowRequest) => admin.workflows.create(body).then(() => undefined, (e: unknown) => e as { status: number; problem: Record<string, unknown> });
    const over = await bad({ steps: [{ name: 'ok', ...py('print(1)') }, { name: 'big', ...py('print(1)'), limits: { memory_bytes: 64 * 1024 ** 3 } }] });
    expect(over?.status).toBe(422);
    expect(over?.problem).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.steps.1.limits.memory_bytes', step_index: 1 });
    const forward = await bad({ steps: [{ name: 'a', ...py('print(1)'), needs: ['b'] }, { name: 'b', ...py('print(1)') }] });
    expect(forward?.problem).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.steps.0.needs.0' });
    const lang = await bad({ steps: [{ name: 'a', language: 'brainfuck', code: 'x' }] });
    expect(lang?.status).toBe(422);
    const tooMany = await bad({ steps: Array.from({ length: 65 }, (_, i) => ({ name: `s${i}`, ...py('print(1)') })) });
    expect(tooMany?.status).toBe(400);
    const otherAgent = await agentClient.workflows.create({ steps: [{ name: 'a', agent_id: agentB, ...py('print(1)') }] }).catch((e: { status: number }) => e);
    expect((otherAgent as { status: number }).status).toBe(403);
    expect((await admin.jobs.list({ limit: 200 })).items.length).toBe(before);
  }, 60_000);

  it("answers another tenant's workflow with 404, and the events stream ends with the workflow", async () => {
    const w = await agentClient.workflows.create({
      steps: [{ name: 'one', ...py('print("hi")') }, { name: 'two', ...py('import sys, time\nprint("live", flush=True)\ntime.sleep(1)\nprint("there")') }],
    });
    const events: string[] = [];
    const output: Record<string, string> = {};
    const statuses: string[] = [];
    for await (const e of agentClient.workflows.events(w.id)) {
      events.push(e.type);
      if (e.type === 'output') output[e.chunk.step] = (output[e.chunk.step] ?? '') + e.chunk.data;
      if (e.type === 'step' && e.step.name === 'two') statuses.push(e.step.status);
    }
    expect(events[0]).toBe('workflow');
    expect(events.at(-1)).toBe('end');
    expect(output).toEqual({ one: 'hi\n', two: 'live\nthere\n' });
    expect(statuses.at(-1)).toBe('succeeded');
    expect(statuses).toContain('running');
    const other = await kiln.newTenant();
    await expect(other.admin.workflows.get(w.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(other.admin.workflows.cancel(w.id)).rejects.toBeInstanceOf(NotFoundError);
    expect((await other.admin.workflows.list()).items).toEqual([]);
  }, 60_000);

  it('survives SIGKILLs of the server during a 20-workflow run: every workflow ends, no step runs twice', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const w = await admin.workflows.create({
        name: `crash-${i}`,
        steps: [
          { name: 'one', ...py('import os\nos.makedirs("out",exist_ok=True)\nopen("out/n.txt","w").write("1")') },
          { name: 'two', ...py('print(open("n.txt").read())'), inputs: [{ step: 'one', artifact: 'out/n.txt', path: 'n.txt' }] },
          { name: 'three', ...py('print(3)') },
        ],
      });
      ids.push(w.id);
    }
    for (let kill = 0; kill < 3; kill++) {
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 1500)));
      await kiln.killServer();
      await kiln.startServer();
    }
    const done = await Promise.all(ids.map((id) => ended(admin, id, 180_000)));
    expect(done.map((w) => w.status)).toEqual(ids.map(() => 'succeeded'));
    const stepJobs = done.flatMap((w) => w.steps!.map((s) => s.job_id));
    expect(stepJobs.every((j) => j !== null)).toBe(true);
    expect(new Set(stepJobs).size).toBe(60);
    // No second job for any step, and each step's job completed once.
    const completes = new Map<string, number>();
    let cursor: string | undefined;
    for (let pageNo = 0; pageNo < 100; pageNo++) {
      const page = await admin.audit.list({ limit: 200, action: 'job.complete', ...(cursor ? { cursor } : {}) });
      for (const e of page.items) completes.set(e.resource_id!, (completes.get(e.resource_id!) ?? 0) + 1);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    for (const job of stepJobs) expect(completes.get(job!) ?? 0).toBeLessThanOrEqual(1);
    const starts = await admin.audit.list({ limit: 200, action: 'workflow_step.start' });
    const perStep = new Map<string, number>();
    for (const e of starts.items) perStep.set(e.resource_id!, (perStep.get(e.resource_id!) ?? 0) + 1);
    expect([...perStep.values()].every((n) => n === 1)).toBe(true);
  }, 400_000);

  it('retries a step whose runner is lost mid-step, as jobs are retried', async () => {
    await kiln.startRunner({ name: 'r2', capacity: 2 });
    const w = await admin.workflows.create({ steps: [{ name: 'slow', ...py('import time\ntime.sleep(4)\nprint("made it")') }] });
    const jobId = await eventually('the step to run', async () => {
      const s = stepOf(await admin.workflows.get(w.id), 'slow');
      return s.status === 'running' ? s.job_id! : undefined;
    });
    const sandbox = (await kiln.operator.sandboxes.list({ job_id: jobId })).items[0]!;
    const runner = await kiln.operator.runners.get(sandbox.runner_id);
    await kiln.runners.find((r) => r.name === runner.name)!.kill();
    const done = await ended(admin, w.id, 120_000);
    expect(done.status).toBe('succeeded');
    const job = await admin.jobs.get(jobId);
    expect(job.attempt).toBeGreaterThanOrEqual(2);
    expect(job.stdout).toBe('made it\n');
  }, 180_000);

  it('audits every step start and end and the workflow, and the chain verifies', async () => {
    const t = await kiln.newTenant();
    const w = await t.agentClient.workflows.create({ steps: [{ name: 'one', ...py('print(1)') }, { name: 'two', ...py('print(2)') }] });
    await ended(t.agentClient, w.id);
    const events = (await t.admin.audit.list({ limit: 200 })).items.filter((e) => e.details.workflow_id === w.id || e.resource_id === w.id);
    const actions = events.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['workflow.create', 'workflow.start', 'workflow_step.start', 'workflow_step.end', 'workflow.end']));
    expect(actions.filter((a) => a === 'workflow_step.start')).toHaveLength(2);
    expect(events.every((e) => e.actor_id === t.agent.id)).toBe(true);
    expect((await t.admin.audit.verify()).ok).toBe(true);
    expect((await admin.audit.verify()).ok).toBe(true);
  }, 60_000);
});
