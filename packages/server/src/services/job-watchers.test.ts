import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { JobWatchHub, type JobMessage, type JobWatcher } from './job-watchers.js';
import { submitJob } from './jobs.js';
import { topics, type Notifier } from './notifier.js';
import { reportJobEvents, leaseWork } from './runner-protocol.js';

/** The bed's real notifier, counting the subscriptions made to each topic. */
function countingNotifier(inner: Notifier): Notifier & { subscriptions: Map<string, number> } {
  const subscriptions = new Map<string, number>();
  return {
    subscriptions,
    publish: (topic, payload) => inner.publish(topic, payload),
    subscribe: (topic, listener) => {
      subscriptions.set(topic, (subscriptions.get(topic) ?? 0) + 1);
      return inner.subscribe(topic, listener);
    },
    next: (topic, timeoutMs, signal) => inner.next(topic, timeoutMs, signal),
    sent: () => inner.sent(),
    close: () => inner.close(),
  };
}

class CollectingWatcher implements JobWatcher {
  readonly messages: JobMessage[] = [];
  closed = false;
  deliver(message: JobMessage): void {
    this.messages.push(message);
  }
  close(): void {
    this.closed = true;
  }
  bufferedBytes(): number {
    return 0;
  }
}

describe.each(DB_KINDS)('job watch hub on %s', (kind) => {
  let bed: JobBed;
  let tenant: TestTenant;
  beforeAll(async () => {
    bed = await openJobBed(kind);
    tenant = await bed.newTenant('watched');
  });
  afterAll(async () => {
    await bed.close();
  });
  beforeEach(async () => {
    await bed.reset();
  });

  it('gives a hundred watchers of one job one subscription and one database poll, fanned out to all', async () => {
    const notifier = countingNotifier(bed.deps.notifier);
    const hub = new JobWatchHub({ store: bed.store, notifier }, { maxPerJob: 1000, maxPerKey: 1000, maxPerTenant: 1000 });
    const runnerId = await bed.runner('hub-node');
    const job = await submitJob(bed.deps, tenant.agent, jobRequest());
    await leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });
    const watchers = Array.from({ length: 100 }, () => new CollectingWatcher());
    const tickets = watchers.map(() => hub.admit(job.id, tenant.agent));
    const leaves = watchers.map((w) => hub.watch(job.id, w));
    expect(notifier.subscriptions.get(topics.job(job.id))).toBe(1);
    expect(hub.sourceCount).toBe(1);

    await reportJobEvents(bed.deps, await bed.holder(job.id), job.id, { attempt: 1, events: [{ type: 'output', stream: 'stdout', data_base64: Buffer.from('shared\n').toString('base64') }] });
    const deadline = Date.now() + 10_000;
    while (watchers.some((w) => !w.messages.some((m) => m.type === 'output')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const w of watchers) expect(w.messages.filter((m) => m.type === 'output')).toEqual([{ type: 'output', origin: bed.deps.liveOutput.origin, seq: 1, stream: 'stdout', data: 'shared\n' }]);

    for (const leave of leaves) leave();
    for (const t of tickets) t.release();
    expect(hub.sourceCount).toBe(0);
    expect(hub.watcherCount).toBe(0);
    hub.close();
  });

  it('caps watchers per job, per key and per tenant, and frees the place on release', async () => {
    const hub = new JobWatchHub({ store: bed.store, notifier: bed.deps.notifier }, { maxPerJob: 3, maxPerKey: 4, maxPerTenant: 5 });
    const other = { ...tenant.agent, keyId: 'key_other' } as typeof tenant.agent;
    const third = { ...tenant.agent, keyId: 'key_third' } as typeof tenant.agent;
    const held = [hub.admit('job_a', tenant.agent), hub.admit('job_a', tenant.agent), hub.admit('job_a', other)];
    const perJob = await expectKilnError(Promise.resolve().then(() => hub.admit('job_a', third)), 'RATE_LIMITED');
    expect(perJob.extra).toMatchObject({ scope: 'job', limit: 3, retry_after: 5 });
    held.push(hub.admit('job_b', tenant.agent), hub.admit('job_b', tenant.agent));
    const perKey = await expectKilnError(Promise.resolve().then(() => hub.admit('job_c', tenant.agent)), 'RATE_LIMITED');
    expect(perKey.extra).toMatchObject({ scope: 'key', limit: 4 });
    const perTenant = await expectKilnError(Promise.resolve().then(() => hub.admit('job_c', third)), 'RATE_LIMITED');
    expect(perTenant.extra).toMatchObject({ scope: 'tenant', limit: 5 });
    held[0]!.release();
    held[0]!.release(); // twice is once
    expect(hub.watcherCount).toBe(4);
    held.push(hub.admit('job_a', third));
    for (const t of held) t.release();
    expect(hub.watcherCount).toBe(0);
  });

  it('ends every watcher from one poll when the end message was lost, and closes them when the job is gone', async () => {
    const hub = new JobWatchHub({ store: bed.store, notifier: bed.deps.notifier }, undefined, 20);
    const runnerId = await bed.runner('poll-node');
    const job = await submitJob(bed.deps, tenant.agent, jobRequest());
    await leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });
    const watchers = [new CollectingWatcher(), new CollectingWatcher()];
    const leaves = watchers.map((w) => hub.watch(job.id, w));
    // Settled behind the notifier's back: only the poll can tell.
    await bed.store.db.updateTable('jobs').set({ status: 'succeeded', output_refs: JSON.stringify({ stdout: null, stderr: null, artifacts: [] }) }).where('id', '=', job.id).execute();
    const deadline = Date.now() + 10_000;
    while (watchers.some((w) => !w.messages.some((m) => m.type === 'end')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const w of watchers) expect(w.messages.at(-1)).toMatchObject({ type: 'end', job: { id: job.id, status: 'succeeded' } });
    for (const leave of leaves) leave();

    const gone = new CollectingWatcher();
    const leave = hub.watch('job_never_existed', gone);
    while (!gone.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(gone.closed).toBe(true);
    leave();
    hub.close();
  });
});
