import { getEventListeners } from 'node:events';
import type { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase, type TestDatabase } from '../../../../test/support/databases.js';
import { DB_KINDS } from '../store/testing.js';
import { createNotifier, topics, type Notifier, pendingWake } from './notifier.js';

/** Resolves with the first `count` messages a subscriber sees on `topic`. */
function collect(notifier: Notifier, topic: string, count: number): Promise<unknown[]> {
  const seen: unknown[] = [];
  return new Promise((resolve) => {
    const unsubscribe = notifier.subscribe(topic, (payload) => {
      seen.push(payload);
      if (seen.length === count) {
        unsubscribe();
        resolve(seen);
      }
    });
  });
}

/** Listeners left on a topic: a timed-out or aborted wait must not leave one behind. */
const listeners = (notifier: Notifier, topic: string) => (notifier as unknown as { emitter: EventEmitter }).emitter.listenerCount(topic);

describe.each(DB_KINDS)('notifier on %s', (kind) => {
  let database: TestDatabase | undefined;
  let open: () => Promise<Notifier>;
  let notifier: Notifier;
  const others: Notifier[] = [];

  beforeAll(async () => {
    if (kind === 'postgres') database = await createPostgresDatabase();
    open = async () => createNotifier(database ? { kind: 'postgres', url: database.url } : { kind: 'sqlite' });
    notifier = await open();
  });
  afterAll(async () => {
    await notifier.close();
    for (const n of others) await n.close();
    await database?.drop();
  });

  it('delivers a publish to each subscriber, once, until it unsubscribes', async () => {
    const topic = topics.job('job_a');
    const first = collect(notifier, topic, 2);
    const seen: unknown[] = [];
    const unsubscribe = notifier.subscribe(topic, (p) => seen.push(p));
    notifier.publish(topic, { type: 'status', n: 1 });
    notifier.publish(topics.job('job_b'), { type: 'status', n: 99 });
    notifier.publish(topic, { type: 'status', n: 2 });
    expect(await first).toEqual([
      { type: 'status', n: 1 },
      { type: 'status', n: 2 },
    ]);
    expect(seen).toEqual([
      { type: 'status', n: 1 },
      { type: 'status', n: 2 },
    ]);
    unsubscribe();
    const barrier = collect(notifier, topic, 1);
    notifier.publish(topic, { type: 'status', n: 3 });
    await barrier;
    expect(seen).toHaveLength(2);
  });

  it('next resolves with the next message on its topic', async () => {
    const waiting = notifier.next(topics.work, 10_000);
    notifier.publish(topics.runner('runner_x'));
    notifier.publish(topics.work, { hint: 'python' });
    expect(await waiting).toEqual({ hint: 'python' });
    expect(listeners(notifier, topics.work)).toBe(0);
  });

  it('next times out cleanly with undefined, and an abort ends it early', async () => {
    const topic = topics.runner('runner_quiet');
    expect(await notifier.next(topic, 10)).toBeUndefined();
    expect(listeners(notifier, topic)).toBe(0);
    const controller = new AbortController();
    const waiting = notifier.next(topic, 60_000, controller.signal);
    expect(listeners(notifier, topic)).toBe(1);
    controller.abort();
    expect(await waiting).toBeUndefined();
    expect(listeners(notifier, topic)).toBe(0);
    // A later message still reaches a later waiter.
    const later = notifier.next(topic, 10_000);
    notifier.publish(topic, 'wake');
    expect(await later).toBe('wake');
  });

  it('pendingWake: cancel ends the wait at once, and neither it nor the caller\'s signal keeps a listener', async () => {
    const topic = topics.runner('runner_cancel');
    const caller = new AbortController();
    const pending = pendingWake(notifier, topic, 60_000, caller.signal);
    expect(listeners(notifier, topic)).toBe(1);
    pending.cancel();
    expect(await pending.wake).toBeUndefined();
    expect(listeners(notifier, topic)).toBe(0);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    // The caller's abort ends it too; a message still wakes it otherwise.
    const aborted = pendingWake(notifier, topic, 60_000, caller.signal);
    caller.abort();
    expect(await aborted.wake).toBeUndefined();
    const woken = pendingWake(notifier, topic, 60_000);
    notifier.publish(topic, 'go');
    expect(await woken.wake).toBe('go');
  });

  it('sent() resolves once everything published so far went out, so a producer can keep pace', async () => {
    const topic = topics.job('job_paced');
    const arrived = collect(notifier, topic, 200);
    for (let i = 0; i < 200; i++) notifier.publish(topic, { i });
    await notifier.sent();
    expect(await arrived).toEqual(Array.from({ length: 200 }, (_, i) => ({ i })));
    await notifier.sent(); // nothing pending: at once
  });

  it('delivers one publisher\'s messages in the order it published them', async () => {
    // Watchers depend on it: output chunks are dropped when their seq is not above the last one seen,
    // and `end` (often too big for NOTIFY, so delivered in-process) must come after the last chunk.
    const topic = topics.job('job_ordered');
    const sent = Array.from({ length: 60 }, (_, seq) => (seq % 20 === 19 ? { seq, pad: 'p'.repeat(9000) } : { seq }));
    const received = collect(notifier, topic, sent.length);
    for (const m of sent) notifier.publish(topic, m);
    expect(((await received) as { seq: number }[]).map((m) => m.seq)).toEqual(sent.map((m) => m.seq));
  });

  it.runIf(kind === 'postgres')('reaches every replica through LISTEN/NOTIFY, and keeps oversized messages in-process', async () => {
    const replica = await open();
    others.push(replica);
    const topic = topics.job('job_shared');
    const onReplica = collect(replica, topic, 2);
    const onSelf = collect(notifier, topic, 3);
    const big = { type: 'output', data: 'x'.repeat(10_000) };
    notifier.publish(topic, big);
    notifier.publish(topic, { type: 'status', n: 1 });
    notifier.publish(topic, { type: 'status', n: 2 });
    // The replica sees the small messages only: NOTIFY cannot carry 10 kB.
    expect(await onReplica).toEqual([
      { type: 'status', n: 1 },
      { type: 'status', n: 2 },
    ]);
    const self = await onSelf;
    expect(self).toHaveLength(3);
    expect(self).toContainEqual(big);
    expect(self).toContainEqual({ type: 'status', n: 2 });
    // And a wake-up from the replica reaches a waiter here.
    const waiting = notifier.next(topics.work, 10_000);
    replica.publish(topics.work, { from: 'replica' });
    expect(await waiting).toEqual({ from: 'replica' });
  });
});
