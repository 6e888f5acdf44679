import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Job } from '@kiln/core';
import { jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { submitJob, waitForJob } from './jobs.js';
import { topics } from './notifier.js';

// `POST /v1/jobs?wait=true` answers from the job's messages (issue 14: no read of the row after its
// start). The local notifier delivers a message at once, so this runs on SQLite's; PostgreSQL's delivers
// the same messages through NOTIFY, which the e2e suites cover.
describe('a waiting answer', () => {
  let bed: JobBed;
  let acme: TestTenant;
  beforeAll(async () => {
    bed = await openJobBed('sqlite');
    acme = await bed.newTenant('acme');
    await bed.runner('node-a');
  });
  afterAll(() => bed.close());

  const flushMicrotasks = async () => {
    for (let i = 0; i < 50; i++) await Promise.resolve();
  };

  it('hears an end published a few microtasks after output, as a completion publishes them (no message falls between two waits)', async () => {
    // Timers stopped: the quiet-second re-read cannot answer, only the messages can.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const job = await submitJob(bed.deps, acme.agent, jobRequest());
      let answered: Job | undefined;
      void waitForJob(bed.deps, acme.agent, job.id, 60_000, undefined, job).then((j) => (answered = j));
      await flushMicrotasks();
      bed.deps.notifier.publish(topics.job(job.id), { type: 'status', job: { ...job, status: 'running' } });
      bed.deps.notifier.publish(topics.job(job.id), { type: 'output', stream: 'stdout', data: 'aGkK' });
      await Promise.resolve();
      bed.deps.notifier.publish(topics.job(job.id), { type: 'end', job: { ...job, status: 'succeeded', verdict: 'ok' } });
      await flushMicrotasks();
      expect(answered).toMatchObject({ id: job.id, status: 'succeeded' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('answers the job as its start message carries it when the wait ends, read fresh at the deadline', async () => {
    const job = await submitJob(bed.deps, acme.agent, jobRequest());
    const waiting = waitForJob(bed.deps, acme.agent, job.id, 50, undefined, job);
    bed.deps.notifier.publish(topics.job(job.id), { type: 'status', job: { ...job, status: 'running' } });
    // The message said running, but the row still says queued: the deadline's answer is the row's.
    expect((await waiting).status).toBe('queued');
  });

  it('ends at once, without an answer to anyone, when its caller goes away', async () => {
    const job = await submitJob(bed.deps, acme.agent, jobRequest());
    const gone = new AbortController();
    const waiting = waitForJob(bed.deps, acme.agent, job.id, 60_000, gone.signal, job);
    gone.abort();
    expect((await waiting).status).toBe('queued');
  });
});
