import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';

/**
 * Wake-ups between the parts of the control plane: new work for lease polls, a cancel for a runner's
 * heartbeat, a job's progress for its event stream. In-process on SQLite (one process owns the file);
 * LISTEN/NOTIFY on PostgreSQL, so a wake-up reaches every replica. Delivery is best effort: every
 * waiter also re-reads the database, so a lost wake-up costs latency, never correctness.
 */
export interface Notifier {
  publish(topic: string, payload?: unknown): void;
  /** Returns the unsubscribe function. */
  subscribe(topic: string, listener: (payload: unknown) => void): () => void;
  /** Resolves on the next message on `topic`, or with undefined after `timeoutMs` or on abort. */
  next(topic: string, timeoutMs: number, signal?: AbortSignal): Promise<unknown>;
  /**
   * Resolves once every message published so far has gone out. A producer that awaits it (a runner's
   * output report) is held to the pace of the notifier, instead of queueing messages without bound.
   */
  sent(): Promise<void>;
  close(): Promise<void>;
}

const CHANNEL = 'kiln_events';
// NOTIFY payloads are limited to 8000 bytes; larger messages are delivered in-process only.
const MAX_NOTIFY_BYTES = 7900;

class LocalNotifier implements Notifier {
  protected readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(topic: string, payload?: unknown): void {
    this.emitter.emit(topic, payload);
  }

  subscribe(topic: string, listener: (payload: unknown) => void): () => void {
    this.emitter.on(topic, listener);
    return () => this.emitter.off(topic, listener);
  }

  next(topic: string, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve) => {
      const done = (payload?: unknown) => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(payload);
      };
      const onAbort = () => done(undefined);
      const unsubscribe = this.subscribe(topic, done);
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async sent(): Promise<void> {}

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}

class PostgresNotifier extends LocalNotifier {
  private readonly listener: pg.Client;
  private readonly sender: pg.Pool;
  private closed = false;
  // Publishes go out one at a time, in order: on a pool two NOTIFYs can commit out of order, and
  // watchers rely on order (output chunks by seq, `end` after the last chunk).
  private sending: Promise<unknown> = Promise.resolve();
  // Messages too big for NOTIFY wait here; a small marker travels the NOTIFY stream in their place, so
  // this process emits them in order with the rest. Other replicas ignore markers that are not theirs.
  private readonly held = new Map<string, { topic: string; payload: unknown }>();
  private readonly instance = randomUUID();
  private heldCount = 0;

  constructor(url: string) {
    super();
    this.listener = new pg.Client({ connectionString: url });
    this.sender = new pg.Pool({ connectionString: url, max: 2 });
    this.sender.on('error', () => {});
  }

  async start(): Promise<void> {
    this.listener.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      try {
        const { topic, payload, held } = JSON.parse(msg.payload) as { topic: string; payload: unknown; held?: string };
        if (held === undefined) {
          this.emitter.emit(topic, payload);
        } else if (this.held.has(held)) {
          const message = this.held.get(held)!;
          this.held.delete(held);
          this.emitter.emit(message.topic, message.payload);
        }
      } catch {
        // not ours
      }
    });
    this.listener.on('error', () => {});
    await this.listener.connect();
    await this.listener.query(`LISTEN ${CHANNEL}`);
  }

  override publish(topic: string, payload?: unknown): void {
    if (this.closed) {
      super.publish(topic, payload);
      return;
    }
    let text = JSON.stringify({ topic, payload });
    let held: string | undefined;
    if (Buffer.byteLength(text) > MAX_NOTIFY_BYTES) {
      held = `${this.instance}:${++this.heldCount}`;
      this.held.set(held, { topic, payload });
      text = JSON.stringify({ topic, held });
    }
    // Our own LISTEN delivers it back to this process too, so local waiters are woken exactly once.
    this.sending = this.sending
      .then(() => this.sender.query('select pg_notify($1, $2)', [CHANNEL, text]))
      .catch(() => {
        if (held !== undefined) this.held.delete(held);
        super.publish(topic, payload);
      });
  }

  override async sent(): Promise<void> {
    await this.sending;
  }

  override async close(): Promise<void> {
    this.closed = true;
    await this.sending;
    await super.close();
    await this.listener.end().catch(() => {});
    await this.sender.end().catch(() => {});
  }
}

export async function createNotifier(options: { kind: 'sqlite' } | { kind: 'postgres'; url: string }): Promise<Notifier> {
  if (options.kind === 'sqlite') return new LocalNotifier();
  const notifier = new PostgresNotifier(options.url);
  await notifier.start();
  return notifier;
}

/** The topics, in one place. */
export const topics = {
  /** queued work appeared (a new job, a requeue) */
  work: 'work',
  /** something a runner must act on (a cancel of one of its jobs) */
  runner: (runnerId: string) => `runner:${runnerId}`,
  /** a job changed status or produced output */
  job: (jobId: string) => `job:${jobId}`,
  /** a workflow's steps or status changed */
  workflow: (workflowId: string) => `workflow:${workflowId}`,
};

/** A wait for the next message that its caller can drop: `cancel()` ends it at once, timer and listener. */
export interface PendingWake {
  wake: Promise<unknown>;
  cancel(): void;
}

/**
 * `notifier.next`, cancellable. Long polls start waiting before they read the database (so no message
 * falls between the read and the wait) and most of them answer without waiting: they cancel instead of
 * leaving a timer and a listener behind for every request.
 */
export function pendingWake(notifier: Notifier, topic: string, timeoutMs: number, signal?: AbortSignal): PendingWake {
  const local = new AbortController();
  const onAbort = () => local.abort(WAKE_DROPPED);
  if (signal?.aborted) local.abort(WAKE_DROPPED);
  signal?.addEventListener('abort', onAbort, { once: true });
  const wake = notifier.next(topic, timeoutMs, local.signal).finally(() => signal?.removeEventListener('abort', onAbort));
  return { wake, cancel: () => local.abort(WAKE_DROPPED) };
}

/**
 * The reason a dropped wait gives. Most requests drop one; `abort()` without a reason would build a
 * DOMException with its stack each time, a measurable share of a small job's CPU.
 */
const WAKE_DROPPED = new Error('the wait was dropped');
