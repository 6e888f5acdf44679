import { createHash } from 'node:crypto';
import {
  INLINE_BLOB_MAX_BYTES,
  type CompletionReport,
  type JobSpec,
  type LeasedJob,
  type LeaseRef,
  type ReportedBlob,
  type RunnerLanguage,
  type UploadedBlob,
} from '@kiln/core';
import type { OneShotSpec, RunResult, SandboxDriver } from '../sandbox/driver.js';
import { setupFailure } from '../sandbox/one-shot.js';
import { boundRejected, selectArtifacts } from './artifact-selection.js';
import { ControlPlaneError, type ControlPlaneClient } from './control-plane-client.js';
import { detectHostCapacity, hostRefusal, MemoryLedger, type HostCapacity } from './host-capacity.js';
import { OutputBatcher } from './output-batcher.js';
import type { PoolStats } from '../pool/warm-pool.js';
import type { JobStdinHost } from '../job-stdin/job-stdin-host.js';

export interface AgentLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RunnerAgentOptions {
  client: ControlPlaneClient;
  driver: SandboxDriver;
  /** Languages detected inside this node's sandboxes. */
  languages: RunnerLanguage[];
  /** Turns a leased job's frozen spec into what the sandbox runs. */
  toRunSpec: (spec: JobSpec) => Omit<OneShotSpec, 'signal' | 'onStdout' | 'onStderr'>;
  name: string;
  zone: string;
  /** Jobs run at once on this node. */
  capacity: number;
  address?: string | null;
  labels?: Record<string, string>;
  logger: AgentLogger;
  /** How long one lease poll may wait on the server. @default 20000 */
  leaseWaitMs?: number;
  /** On stop, how long running jobs may take to finish before they are abandoned. @default 10000 */
  shutdownGraceMs?: number;
  /** What this node can honour (memory budget, pid_max). @default measured by detectHostCapacity() */
  host?: HostCapacity;
  /** The node's memory ledger, shared with its session sandboxes. @default a new one over `host`'s budget */
  memory?: MemoryLedger;
  /**
   * The memory a job is assumed to need before its lease says (the lease asks for no more jobs than
   * the free budget holds at this size each). @default 268435456 (the default policy's memory_bytes)
   */
  slotMemoryBytes?: number;
  /** The warm pool's counts, sent with each heartbeat (the control plane's /metrics shows them). */
  poolStats?: () => PoolStats;
  /** Where a `stdin_open` job's stdin writer goes, for the signed endpoint to write to. */
  jobStdin?: JobStdinHost;
  /** How long a job's output gathers before it is sent to live watchers. @default 50 */
  outputFlushIntervalMs?: number;
}

interface RunningJob {
  lease: LeasedJob;
  abort: AbortController;
  /** Why the job is being stopped from outside, if it is. */
  stopReason?: 'canceled' | 'lost' | 'shutdown';
  done: Promise<void>;
}

const sha256Checksum = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/**
 * Raw bytes carried inline in one completion report at most; blobs past it are uploaded. Base64 and JSON
 * make this ~350 KiB on the wire: well under the control plane's body limit (1 MiB by default), however
 * many small files a sandbox writes.
 */
const INLINE_REPORT_BUDGET_BYTES = 256 * 1024;
/** Refused files a report names one by one; the rest are summed up in one entry (boundRejected). */
const REJECTED_NAMED_MAX = 100;

/** How long a job runs before its first heartbeat (a long poll that carries cancels) is sent. */
const FIRST_BEAT_GRACE_MS = 250;

/** What a heartbeat may take beyond the two intervals (the server's hold and one more) before it is sent again. */
const HEARTBEAT_TIMEOUT_SLACK_MS = 2000;

/** The least time between two heartbeats, so a server that answers at once cannot make us spin. */
const MIN_HEARTBEAT_GAP_MS = 100;

/** Waits `ms`, or less if `signal` aborts; leaves no listener behind either way. */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * The data-plane agent of one node: registers, heartbeats, long-polls for leases, runs each job in the
 * sandbox driver, streams output, uploads outputs and reports with the attempt as a fencing token.
 */
export class RunnerAgent {
  private runnerId: string | undefined;
  private heartbeatIntervalMs = 2000;
  /** The control plane's body limit, from its register answer (older servers do not say). */
  private maxRequestBytes: number | undefined;
  /** The control plane feeds watchers the output a report says its events did not carry (older ones do not). */
  private acceptsLiveBytes = false;
  private readonly running = new Map<string, RunningJob>();
  private readonly stopController = new AbortController();
  private slotFreed: (() => void) | undefined;
  private loops: Promise<void>[] = [];
  private draining = false;
  private wakeHeartbeat: (() => void) | undefined;
  private readonly host: HostCapacity;
  /** The memory limits of admitted jobs against the node's budget (capacity × memory accounting). */
  readonly memory: MemoryLedger;

  constructor(private readonly options: RunnerAgentOptions) {
    this.host = options.host ?? detectHostCapacity();
    this.memory = options.memory ?? new MemoryLedger(this.host.memoryBudgetBytes);
  }

  /**
   * Jobs to ask the control plane for: free slots, and no more than the uncommitted memory holds at
   * `slotMemoryBytes` each, so a node never leases work its RAM cannot hold.
   */
  freeSlots(): number {
    const bySlots = this.options.capacity - this.running.size;
    const byMemory = Math.floor(this.memory.availableBytes / (this.options.slotMemoryBytes ?? 256 * 1024 * 1024));
    // An idle node always takes one job, even on a budget under the assumed size: the job's own limits
    // then decide (refused if over the budget, run if within).
    const atLeast = this.running.size === 0 ? 1 : 0;
    return Math.max(0, Math.min(bySlots, Math.max(byMemory, atLeast)));
  }

  get id(): string | undefined {
    return this.runnerId;
  }

  get runningJobs(): number {
    return this.running.size;
  }

  /** Registers (retrying until the control plane answers) and starts the heartbeat and lease loops. */
  async start(): Promise<void> {
    await this.register();
    this.loops = [this.heartbeatLoop(), this.leaseLoop()];
  }

  /** Stops leasing, lets running jobs finish within the grace period, then abandons the rest. */
  async stop(): Promise<void> {
    if (this.stopController.signal.aborted) return;
    this.stopController.abort();
    this.slotFreed?.();
    this.wakeHeartbeat?.();
    const graceOver = new AbortController();
    const grace = sleep(this.options.shutdownGraceMs ?? 10_000, graceOver.signal);
    await Promise.race([Promise.all([...this.running.values()].map((r) => r.done)), grace]);
    graceOver.abort(); // no timer may keep the process alive once the jobs are done
    for (const job of this.running.values()) {
      job.stopReason = 'shutdown';
      job.abort.abort();
    }
    await Promise.all([...this.running.values()].map((r) => r.done));
    await Promise.all(this.loops);
  }

  private async register(): Promise<void> {
    const { options } = this;
    for (let delayMs = 200; !this.stopController.signal.aborted; delayMs = Math.min(delayMs * 2, 5000)) {
      try {
        const answer = await options.client.register({
          name: options.name,
          zone: options.zone,
          capacity: options.capacity,
          address: options.address ?? null,
          labels: options.labels ?? {},
          languages: options.languages,
        });
        this.runnerId = answer.runner_id;
        this.heartbeatIntervalMs = answer.heartbeat_interval_ms;
        this.maxRequestBytes = answer.max_request_bytes;
        this.acceptsLiveBytes = answer.accepts_live_bytes === true;
        options.logger.info({ runner_id: answer.runner_id }, 'registered with the control plane');
        return;
      } catch (err) {
        options.logger.warn({ err: String(err) }, 'registration failed; retrying');
        await sleep(delayMs, this.stopController.signal);
      }
    }
  }

  private leaseRefs(): LeaseRef[] {
    return [...this.running.values()]
      .filter((r) => r.stopReason === undefined)
      .map((r) => ({ job_id: r.lease.job_id, attempt: r.lease.attempt }));
  }

  private async heartbeatLoop(): Promise<void> {
    const signal = this.stopController.signal;
    let lastBeatMs = 0;
    while (!signal.aborted) {
      // With jobs running, the heartbeat is a long poll the server holds for up to one interval and
      // answers early with a cancel: beat again right away. Idle, one beat per interval is enough.
      if (this.leaseRefs().length === 0) {
        // Idle: wait out the interval, but start polling as soon as a job starts.
        const jobStarted = new AbortController();
        this.wakeHeartbeat = () => jobStarted.abort();
        await sleep(Math.max(0, lastBeatMs + this.heartbeatIntervalMs - Date.now()), jobStarted.signal);
        this.wakeHeartbeat = undefined;
        // A job just started: most small jobs end within a moment, and their report says all a beat
        // would. Only a job still running after the grace costs the long poll that carries its cancel.
        if (jobStarted.signal.aborted) {
          // Never past the beat that was due anyway: the grace saves a beat, it must not make one late.
          await sleep(Math.min(FIRST_BEAT_GRACE_MS, Math.max(0, lastBeatMs + this.heartbeatIntervalMs - Date.now())), signal);
          if (this.leaseRefs().length === 0 && Date.now() < lastBeatMs + this.heartbeatIntervalMs) continue;
        }
      }
      await sleep(Math.max(0, lastBeatMs + MIN_HEARTBEAT_GAP_MS - Date.now()), signal);
      if (signal.aborted) break;
      lastBeatMs = Date.now();
      try {
        // The server holds a beat for up to one interval; one that takes much longer (a dead connection,
        // a stalled server) is given up and sent again, so one lost request never silences the node.
        const answer = await this.options.client.heartbeat(
          {
            runner_id: this.runnerId!,
            leases: this.leaseRefs(),
            sandboxes: [],
            ...(this.options.poolStats ? { pool: this.options.poolStats() } : {}),
          },
          { timeoutMs: 2 * this.heartbeatIntervalMs + HEARTBEAT_TIMEOUT_SLACK_MS },
        );
        this.draining = answer.draining;
        for (const stop of answer.stop) {
          const job = this.running.get(stop.job_id);
          if (job && job.lease.attempt === stop.attempt && job.stopReason === undefined) {
            job.stopReason = stop.reason;
            job.abort.abort();
          }
        }
      } catch (err) {
        if (err instanceof ControlPlaneError && (err.status === 404 || err.status === 401)) {
          // The control plane no longer knows this node or its credential (forgotten, revoked): join again.
          await this.register();
        } else {
          this.options.logger.warn({ err: String(err) }, 'heartbeat failed');
        }
      }
    }
  }

  private async leaseLoop(): Promise<void> {
    const signal = this.stopController.signal;
    let backoffMs = 200;
    while (!signal.aborted) {
      const free = this.freeSlots();
      if (free <= 0 || this.draining) {
        await new Promise<void>((resolve) => {
          this.slotFreed = resolve;
          if (this.draining) setTimeout(resolve, this.heartbeatIntervalMs);
        });
        continue;
      }
      try {
        const answer = await this.options.client.lease(
          { runner_id: this.runnerId!, free_slots: free, wait_ms: this.options.leaseWaitMs ?? 20_000 },
          signal,
        );
        backoffMs = 200;
        for (const lease of answer.leases) this.startJob(lease);
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof ControlPlaneError && (err.status === 404 || err.status === 401)) await this.register();
        else this.options.logger.warn({ err: String(err) }, 'lease poll failed');
        await sleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
  }

  private startJob(lease: LeasedJob): void {
    const entry = { lease, abort: new AbortController() } as RunningJob;
    this.running.set(lease.job_id, entry);
    this.wakeHeartbeat?.();
    entry.done = this.runJob(entry)
      .catch((err) => this.options.logger.error({ job_id: lease.job_id, err: String(err) }, 'job handling failed'))
      .finally(() => {
        this.running.delete(lease.job_id);
        const wake = this.slotFreed;
        this.slotFreed = undefined;
        wake?.();
      });
  }

  private async runJob(entry: RunningJob): Promise<void> {
    const { lease } = entry;
    const { client, driver, logger } = this.options;
    const batcher = new OutputBatcher({
      send: (events) => client.sendEvents(lease.job_id, lease.attempt, events),
      logger,
      jobId: lease.job_id,
      ...(this.maxRequestBytes ? { maxRequestBytes: this.maxRequestBytes } : {}),
      ...(this.options.outputFlushIntervalMs !== undefined ? { flushIntervalMs: this.options.outputFlushIntervalMs } : {}),
    });
    // `started` goes out with the first batch of output, or after one batch interval of silence. A job
    // that ends sooner says so in its completion report instead: one request fewer for short jobs.
    batcher.push({ type: 'started' });
    const stream = (name: 'stdout' | 'stderr') => (chunk: Buffer) => batcher.pushOutput(name, chunk);

    let result: RunResult;
    let error: string | null = null;
    const refusal = hostRefusal(lease.spec.limits, this.host);
    if (refusal !== undefined) {
      // Refused, not clamped: the tenant learns which limit and what this node offers.
      logger.warn({ job_id: lease.job_id, reason: refusal }, 'job refused: its limits exceed this node');
      error = refusal;
      result = setupFailure(refusal);
    } else {
      // Waits for room when running jobs hold the budget; a cancel or a lost lease ends the wait.
      const memoryBytes = lease.spec.limits.memory_bytes;
      const admitted = await this.memory.reserve(memoryBytes, entry.abort.signal);
      try {
        const runSpec = this.options.toRunSpec(lease.spec);
        // The egress proxy's log lines name the tenant and the job the sandbox runs for.
        const owner = { tenant_id: lease.tenant_id, job_id: lease.job_id };
        const { jobStdin } = this.options;
        result = await driver.run({
          ...runSpec,
          ...(runSpec.network ? { network: { ...runSpec.network, owner } } : {}),
          ...(lease.spec.stdin_open && jobStdin ? { openStdin: (w) => jobStdin.attach(lease.job_id, lease.attempt, w) } : {}),
          signal: entry.abort.signal,
          onStdout: stream('stdout'),
          onStderr: stream('stderr'),
        });
        error = result.error ?? null;
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
        result = setupFailure(error);
      } finally {
        this.options.jobStdin?.detach(lease.job_id, lease.attempt);
        if (admitted) this.memory.release(memoryBytes);
      }
    }
    // A lost lease belongs to someone else now, and a shutdown leaves the job to be leased again.
    const abandoned = entry.stopReason === 'lost' || entry.stopReason === 'shutdown';
    // Output still pending at the end rides in the report (inline when each stream fits) rather than in
    // a request of its own: the report says how much the events carried, the control plane feeds
    // watchers the rest before it announces the end. A short job costs the lease and the report only.
    let liveBytes: CompletionReport['live_bytes'];
    if (this.acceptsLiveBytes && !abandoned && result.stdout.length <= INLINE_BLOB_MAX_BYTES && result.stderr.length <= INLINE_BLOB_MAX_BYTES) {
      liveBytes = await batcher.finishForReport();
    } else {
      if (batcher.onlyPending('started')) batcher.discard();
      await batcher.flush();
    }
    if (abandoned) {
      logger.info({ job_id: lease.job_id, reason: entry.stopReason }, 'job abandoned without a report');
      return;
    }
    if (entry.stopReason === 'canceled') result.verdict = 'canceled';

    // Small blobs ride inside the completion report: one request instead of three for a typical job.
    let inlineBudget = INLINE_REPORT_BUDGET_BYTES;
    const inline = (bytes: Buffer): ReportedBlob => ({
      checksum: sha256Checksum(bytes),
      size_bytes: bytes.length,
      content_base64: bytes.toString('base64'),
    });
    // A blob the control plane refuses (the tenant's storage quota) is not retried: the job still ends.
    type Upload = ReportedBlob | { refused: string };
    const upload = async (bytes: Buffer): Promise<Upload | undefined> => {
      if (bytes.length <= INLINE_BLOB_MAX_BYTES && bytes.length <= inlineBudget) {
        inlineBudget -= bytes.length;
        return inline(bytes);
      }
      return this.retry(() =>
        client.uploadBlob(lease.job_id, lease.attempt, bytes).catch((err: unknown): Upload => {
          if (err instanceof ControlPlaneError && err.code === 'ARTIFACT_REJECTED') return { refused: err.message.slice(0, 512) };
          throw err;
        }),
      );
    };
    // Refused output still shows its beginning inline on the job.
    const outputBlob = async (bytes: Buffer): Promise<ReportedBlob | undefined> => {
      const blob = await upload(bytes);
      return blob && 'refused' in blob ? inline(bytes.subarray(0, INLINE_BLOB_MAX_BYTES)) : blob;
    };
    const selection = selectArtifacts(result.files, lease.spec.artifacts);
    const stdout = await outputBlob(result.stdout);
    const stderr = await outputBlob(result.stderr);
    if (!stdout || !stderr) return;
    const artifacts: CompletionReport['artifacts'] = [];
    const rejected = [...selection.rejected];
    for (const file of selection.accepted) {
      const blob = await upload(file.content);
      if (!blob) return;
      if ('refused' in blob) rejected.push({ name: file.path, size_bytes: file.content.length, reason: blob.refused });
      else artifacts.push({ name: file.path, ...blob });
    }
    const report: CompletionReport = {
      attempt: lease.attempt,
      verdict: result.verdict,
      exit_status: result.exit_status,
      resource_usage: result.resource_usage,
      stdout,
      stderr,
      artifacts,
      rejected_artifacts: boundRejected(rejected, REJECTED_NAMED_MAX),
      error,
      egress: result.egress ?? null,
      compile: result.compile ?? null,
      ...(liveBytes ? { live_bytes: liveBytes } : {}),
    };
    await this.retry(() => client.complete(lease.job_id, report).then(() => true));
  }

  /**
   * Retries a report until the control plane acknowledges it. A permanent refusal (409 stale attempt,
   * 404) means the job is no longer ours: give up quietly. Returns undefined when given up.
   */
  private async retry<T>(call: () => Promise<T>): Promise<T | undefined> {
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 5000)) {
      try {
        return await call();
      } catch (err) {
        if (err instanceof ControlPlaneError && err.permanent) {
          this.options.logger.warn({ err: err.message }, 'report refused; the lease is no longer ours');
          return undefined;
        }
        if (this.stopController.signal.aborted && delayMs >= 5000) return undefined;
        this.options.logger.warn({ err: String(err) }, 'report failed; retrying');
        await sleep(delayMs);
      }
    }
  }
}

export type { UploadedBlob };
