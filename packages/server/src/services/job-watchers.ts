import { KilnError, type Job } from '@kiln/core';
import { getJob, type JobRow } from '../store/jobs.js';
import type { Store } from '../store/store.js';
import type { Principal } from './context.js';
import { isTerminalStatus, jobFromRow } from './job-views.js';
import type { OutputChunk, OutputLoss } from './live-output.js';
import { topics, type Notifier } from './notifier.js';

/**
 * What travels on a job's topic (services publish these; the hub fans them out). Output and losses
 * carry the `origin` (LiveOutput.origin) of the replica that numbered them.
 */
export type JobMessage =
  | { type: 'status'; job: Job }
  | { type: 'end'; job: Job }
  | ({ type: 'output'; origin: string } & OutputChunk)
  | ({ type: 'lost'; origin: string } & OutputLoss);

/** Bounds on event-stream watchers, per replica. */
export interface WatcherLimits {
  /** Watchers of one job at once. @default 32 */
  maxPerJob: number;
  /** Watchers one key holds open at once. @default 16 */
  maxPerKey: number;
  /** Watchers one tenant holds open at once, over all its keys. @default 64 */
  maxPerTenant: number;
}

export const DEFAULT_WATCHER_LIMITS: WatcherLimits = { maxPerJob: 32, maxPerKey: 16, maxPerTenant: 64 };

/** One watcher of a job, as the hub sees it: where messages go, and what it holds in memory. */
export interface JobWatcher {
  deliver(message: JobMessage): void;
  /** The job is gone (deleted): the watcher ends without an `end`. */
  close(): void;
  /** Bytes of this watcher not yet taken by its connection. */
  bufferedBytes(): number;
}

/**
 * Nothing more will happen to the job: it is terminal and either reported, or canceled with no report
 * pending (never leased, or its runner was lost: recovery clears `runner_id`).
 */
export function isSettled(job: JobRow): boolean {
  if (!isTerminalStatus(job.status)) return false;
  return job.output_refs !== null || (job.status === 'canceled' && job.runner_id === null);
}

/** A held place among the watchers (counted against the caps until released). */
export interface WatchTicket {
  release(): void;
}

interface Source {
  watchers: Set<JobWatcher>;
  unsubscribe: () => void;
  poll: NodeJS.Timeout;
}

/** Retry-After of a refused watcher: streams end when their jobs do, so a few seconds is a fair guess. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The watchers of job event streams on this replica. Watchers of one job share one source: one
 * subscription to the job's topic and one database poll (the safety net for a lost `end`), fanned out
 * to each of them, so a thousand watchers cost what one does. The caps per job, key and tenant bound
 * how many there are at all.
 */
export class JobWatchHub {
  private readonly sources = new Map<string, Source>();
  private readonly perJob = new Map<string, number>();
  private readonly perKey = new Map<string, number>();
  private readonly perTenant = new Map<string, number>();
  private watchersNow = 0;

  constructor(
    private readonly deps: { store: Store; notifier: Notifier },
    private readonly limits: WatcherLimits = DEFAULT_WATCHER_LIMITS,
    private readonly settledPollMs = 2000,
  ) {}

  /**
   * Takes a place for a new watcher of `jobId`, or refuses with 429 RATE_LIMITED (and a Retry-After)
   * naming the cap that is reached. Release the ticket when the connection closes.
   */
  admit(jobId: string, principal: Principal): WatchTicket {
    const key = principal.kind === 'tenant' || principal.kind === 'agent' ? principal.keyId : principal.kind;
    const tenant = principal.kind === 'tenant' || principal.kind === 'agent' ? principal.tenantId : undefined;
    const refuse = (scope: 'job' | 'key' | 'tenant', limit: number) => {
      throw new KilnError(
        'RATE_LIMITED',
        `at most ${limit} event streams may be open per ${scope} at once; close one, or read the job with GET /v1/jobs/{id}`,
        { extra: { scope, limit, retry_after: RETRY_AFTER_SECONDS } },
      );
    };
    if ((this.perJob.get(jobId) ?? 0) >= this.limits.maxPerJob) refuse('job', this.limits.maxPerJob);
    if ((this.perKey.get(key) ?? 0) >= this.limits.maxPerKey) refuse('key', this.limits.maxPerKey);
    if (tenant !== undefined && (this.perTenant.get(tenant) ?? 0) >= this.limits.maxPerTenant) {
      refuse('tenant', this.limits.maxPerTenant);
    }
    bump(this.perJob, jobId, 1);
    bump(this.perKey, key, 1);
    if (tenant !== undefined) bump(this.perTenant, tenant, 1);
    this.watchersNow++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        bump(this.perJob, jobId, -1);
        bump(this.perKey, key, -1);
        if (tenant !== undefined) bump(this.perTenant, tenant, -1);
        this.watchersNow--;
      },
    };
  }

  /** Adds a watcher to the job's shared source (opening it for the first one); returns the leave function. */
  watch(jobId: string, watcher: JobWatcher): () => void {
    let source = this.sources.get(jobId);
    if (!source) {
      const watchers = new Set<JobWatcher>();
      source = {
        watchers,
        unsubscribe: this.deps.notifier.subscribe(topics.job(jobId), (payload) => {
          for (const w of [...watchers]) w.deliver(payload as JobMessage);
        }),
        poll: setInterval(() => void this.pollSettled(jobId), this.settledPollMs),
      };
      source.poll.unref();
      this.sources.set(jobId, source);
    }
    source.watchers.add(watcher);
    return () => {
      const current = this.sources.get(jobId);
      if (!current?.watchers.delete(watcher) || current.watchers.size > 0) return;
      this.closeSource(jobId, current);
    };
  }

  /** Sources open now (one per watched job). */
  get sourceCount(): number {
    return this.sources.size;
  }

  /** Watchers holding a place now. */
  get watcherCount(): number {
    return this.watchersNow;
  }

  /** Bytes every watcher of this replica holds in memory, not yet taken by its connection. */
  bufferedBytes(): number {
    let total = 0;
    for (const source of this.sources.values()) for (const w of source.watchers) total += w.bufferedBytes();
    return total;
  }

  /** Ends every source (shutdown). */
  close(): void {
    for (const [jobId, source] of this.sources) {
      for (const w of [...source.watchers]) w.close();
      this.closeSource(jobId, source);
    }
  }

  /** A lost wake-up delays the end, never loses it: one read per job, whatever the number of watchers. */
  private async pollSettled(jobId: string): Promise<void> {
    const source = this.sources.get(jobId);
    if (!source) return;
    let row: JobRow | undefined;
    try {
      row = await getJob(this.deps.store, jobId);
    } catch {
      return; // the database is away for a moment: look again next time
    }
    if (!row) {
      for (const w of [...source.watchers]) w.close();
    } else if (isSettled(row)) {
      const end: JobMessage = { type: 'end', job: jobFromRow(row) };
      for (const w of [...source.watchers]) w.deliver(end);
    }
  }

  private closeSource(jobId: string, source: Source): void {
    source.unsubscribe();
    clearInterval(source.poll);
    this.sources.delete(jobId);
  }
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}
