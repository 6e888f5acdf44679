import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { listAudit } from './audit.js';
import { createAgent } from './agents.js';
import { completeJob } from './job-completion.js';
import { auditOf, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { submitJob } from './jobs.js';
import { leaseWork } from './runner-protocol.js';
import type { Principal } from './context.js';

describe.each(DB_KINDS)('what a job tells the audit, on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  async function runToCompletion(principal: Principal, rejected: { name: string; size_bytes: number; reason: string }[]) {
    const runner = await bed.runner('node-a');
    const job = await submitJob(bed.deps, principal, jobRequest());
    await leaseWork(bed.deps, { runner_id: runner, free_slots: 1, wait_ms: 0 });
    await completeJob(bed.deps, await bed.holder(job.id), job.id, { ...(await bed.report(job.id, 1)), rejected_artifacts: rejected });
    return job;
  }

  it('records 1,000 refused files as one artifact.reject event with a count and a bounded sample', async () => {
    const rejected = Array.from({ length: 1000 }, (_, i) => ({ name: `out/f${i}.bin`, size_bytes: 10, reason: 'over max_count' }));
    const job = await runToCompletion(acme.admin, rejected);
    const events = await auditOf(bed.store, 'artifact.reject', job.id);
    expect(events).toHaveLength(1);
    const details = JSON.parse(events[0]!.details);
    expect(details).toMatchObject({ count: 1000, by_reason: { 'over max_count': 1000 } });
    expect(details.sample).toHaveLength(10);
    expect(details.sample[0]).toEqual({ name: 'out/f0.bin', size_bytes: 10, reason: 'over max_count' });
    // The job keeps the whole list; the audit's event stays small.
    expect(events[0]!.details.length).toBeLessThan(2000);
  });

  it('stores file names with control characters escaped', async () => {
    const evil = 'report\u001b[2J\u001b]0;owned\u0007\u202egpj.exe\u0000\u0085\u2066x\u007f';
    const job = await runToCompletion(acme.admin, [{ name: evil, size_bytes: 1, reason: 'bad\rreason' }]);
    const [event] = await auditOf(bed.store, 'artifact.reject', job.id);
    // Neither the stored text nor the decoded value holds a control or bidi character.
    expect(event!.details).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    const { sample } = JSON.parse(event!.details);
    expect(sample[0].name).toBe('report\\u001b[2J\\u001b]0;owned\\u0007\\u202egpj.exe\\u0000\\u0085\\u2066x\\u007f');
    expect(sample[0].reason).toBe('bad\\u000dreason');
    expect(sample[0].name).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });

  it('bounds a huge file name in the event', async () => {
    const job = await runToCompletion(acme.admin, [{ name: 'n'.repeat(1024), size_bytes: 1, reason: 'r' }]);
    const [event] = await auditOf(bed.store, 'artifact.reject', job.id);
    const name: string = JSON.parse(event!.details).sample[0].name;
    expect(name.length).toBeLessThan(600);
    expect(name).toMatch(/…\[1024 chars\]$/);
  });

  it('shows an agent the runner\'s events about its own jobs only; the tenant admin sees all', async () => {
    const other = await createAgent(bed.deps, acme.admin, { name: 'other-bot', type: 'test' });
    const otherAgent: Principal = { kind: 'agent', tenantId: acme.tenantId, agentId: other.id, keyId: 'key_x', tenantStatus: 'active' };
    const mine = await runToCompletion(acme.agent, [{ name: 'secret-plan.txt', size_bytes: 1, reason: 'r' }]);
    await bed.reset();
    const theirs = await runToCompletion(otherAgent, []);

    const seenByMe = (await listAudit(bed.deps, acme.agent, { limit: 200 })).items;
    expect(seenByMe.map((e) => e.action)).toEqual(expect.arrayContaining(['job.create', 'job.lease', 'job.complete', 'artifact.reject']));
    expect(seenByMe.every((e) => e.subject_agent_id === acme.agentId)).toBe(true);
    expect(JSON.stringify(seenByMe)).not.toContain(theirs.id);
    expect(JSON.stringify(seenByMe)).not.toContain(other.id);

    const seenByOther = (await listAudit(bed.deps, otherAgent, { limit: 200 })).items;
    expect(seenByOther.length).toBeGreaterThan(0);
    expect(JSON.stringify(seenByOther)).not.toContain(mine.id);
    expect(JSON.stringify(seenByOther)).not.toContain('secret-plan.txt');

    const seenByAdmin = JSON.stringify((await listAudit(bed.deps, acme.admin, { limit: 200 })).items);
    expect(seenByAdmin).toContain(mine.id);
    expect(seenByAdmin).toContain(theirs.id);
  });
});
