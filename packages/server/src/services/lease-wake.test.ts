import { DEFAULT_RULESET, type LeaseResponse } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { completeJob } from './job-completion.js';
import { jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, submitJob } from './jobs.js';
import { topics, type Notifier } from './notifier.js';
import { publishPolicy } from './policies.js';
import { leaseWork } from './runner-protocol.js';

/**
 * Issue 7, point 2: capped jobs started 5 s apart, because a finished job did not wake the lease polls
 * (they looked again only at their periodic recheck). Here the recheck is longer than the test may take:
 * only a wake-up can make the waiting poll answer.
 */
describe.each(DB_KINDS)('lease polls woken by freed capacity on %s', (kind) => {
  let bed: JobBed;
  let capped: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(kind, { leaseRecheckIntervalMs: 600_000 });
    capped = await bed.newTenant('capped');
    await publishPolicy(bed.deps, capped.admin, capped.policyId, {
      expected_version: 1,
      ruleset: { ...DEFAULT_RULESET, concurrency: { max_running_jobs: 1 } },
    });
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  /**
   * Starts a long lease poll and resolves once it waits for a wake-up: the wait is armed before the
   * poll's claim, so a little later its claim has found nothing (the tenant is at its cap).
   */
  async function waitingPoll(runnerId: string): Promise<{ answer: Promise<LeaseResponse>; answered: () => boolean; restore: () => void }> {
    const real = bed.deps.notifier;
    let armed!: () => void;
    const isArmed = new Promise<void>((resolve) => (armed = resolve));
    const watching: Notifier = {
      publish: (topic, payload) => real.publish(topic, payload),
      subscribe: (topic, listener) => real.subscribe(topic, listener),
      next: (topic, timeoutMs, signal) => {
        const next = real.next(topic, timeoutMs, signal);
        if (topic === topics.work) armed();
        return next;
      },
      close: () => real.close(),
    };
    bed.deps.notifier = watching;
    let done = false;
    const answer = leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 600_000 }).finally(() => (done = true));
    await isArmed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    return { answer, answered: () => done, restore: () => (bed.deps.notifier = real) };
  }

  const lease = (runnerId: string) => leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });

  it("a finished job wakes a waiting lease poll, which answers with the capped tenant's next job", async () => {
    const r1 = await bed.runner('node-a');
    const r2 = await bed.runner('node-b');
    const first = await submitJob(bed.deps, capped.admin, jobRequest());
    const second = await submitJob(bed.deps, capped.admin, jobRequest());
    expect((await lease(r1)).leases.map((l) => l.job_id)).toEqual([first.id]);
    const poll = await waitingPoll(r2);
    try {
      expect(poll.answered()).toBe(false);
      await completeJob(bed.deps, await bed.holder(first.id), first.id, await bed.report(first.id, 1));
      expect((await poll.answer).leases.map((l) => l.job_id)).toEqual([second.id]);
    } finally {
      poll.restore();
    }
  }, 20_000);

  it("canceling a running job wakes a waiting lease poll, which answers with the capped tenant's next job", async () => {
    const r1 = await bed.runner('node-a');
    const first = await submitJob(bed.deps, capped.admin, jobRequest());
    const second = await submitJob(bed.deps, capped.admin, jobRequest());
    expect((await lease(r1)).leases.map((l) => l.job_id)).toEqual([first.id]);
    const poll = await waitingPoll(r1);
    try {
      expect(poll.answered()).toBe(false);
      await cancelJob(bed.deps, capped.admin, first.id);
      expect((await poll.answer).leases.map((l) => l.job_id)).toEqual([second.id]);
    } finally {
      poll.restore();
    }
  }, 20_000);
});
