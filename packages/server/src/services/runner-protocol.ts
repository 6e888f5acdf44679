import { jobEnded, type PlaneEvent } from './plane-events.js';
import type { Readable } from 'node:stream';
import {
  KilnError,
  planeSigningKey,
  toRfc3339,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type JobEventsReport,
  type LeaseRequest,
  type LeaseResponse,
  type RegisterRunnerRequest,
  type RegisterRunnerResponse,
  type UploadedBlob,
} from '@kiln/core';
import { appendAuditEvent } from '../store/audit.js';
import { formatRunnerCredential, hashSecret, newSecret } from '../domain/keys.js';
import {
  failRunnerSandboxes,
  getRunner,
  markSandboxRunning,
  setRunnerCredential,
  touchRunner,
  upsertRunner,
  type RunnerRow,
} from '../store/fleet.js';
import { claimJobs, extendLeases, getJob, leasesToStop, releaseCanceledReports, requeueOrFail, runningJobsOf, type JobRow } from '../store/jobs.js';
import type { TxHandle } from '../store/store.js';
import type { JobDeps } from './job-deps.js';
import { receiveUpload } from './artifact-storage.js';
import { jobFromRow } from './job-views.js';
import { publishLoss, publishOutput } from './live-output-feed.js';
import { pendingWake, topics } from './notifier.js';
import { withSecretEnv } from './secret-env.js';
import { advanceWorkflowOfJob, WorkflowWakes } from './workflows/engine.js';
import { activeSessionsOfRunner } from '../store/sessions.js';
import { endSessionsFor } from './sessions/lifecycle.js';
import { endServicesFor } from './hosted-services/lifecycle.js';
import { liveServicesOf } from '../store/services.js';

/**
 * Runner protocol use cases (ARCHITECTURE.md §7). The caller has authenticated the runner: `runner_id`
 * and `runnerId` below are the ones its credential names, never taken from a request body.
 */

/** A request bound to the runner whose credential made it. */
export type BoundToRunner<T> = T & { runner_id: string };

/** An audit event a runner's report caused, in the job's tenant chain. */
export async function auditRunnerAction(
  tx: TxHandle,
  nowMs: number,
  event: {
    tenant_id: string | null;
    actor_id: string;
    action: string;
    resource_type: string;
    resource_id: string;
    /** the agent whose job it is: what its agent key sees of the runner's work */
    subject_agent_id: string | null;
    details: Record<string, unknown>;
  },
): Promise<void> {
  await appendAuditEvent(tx, { ...event, outcome: 'success', details: { actor_kind: 'runner', ...event.details } }, nowMs);
}

/** What recovering a job tells: a requeue, or its end when no attempt was left. */
export function recoveryEvent(job: JobRow, outcome: 'requeued' | 'failed', reason: string, nowMs: number): PlaneEvent {
  if (outcome === 'requeued') return { type: 'job_requeued', jobId: job.id, reason };
  return jobEnded({ ...job, status: 'failed', verdict: 'system_error', completed_at: toRfc3339(nowMs) });
}

/**
 * Recovers the running jobs of a runner that is gone or restarted: requeued, or failed when out of
 * attempts. What happened is pushed to `told` (emitted after commit); `onFailed` runs in the same
 * transaction for each job failed for good (its workflow advances).
 */
export async function recoverRunnerWork(
  tx: TxHandle,
  runner: RunnerRow,
  reason: string,
  nowMs: number,
  told: PlaneEvent[] = [],
  onFailed: (job: JobRow) => Promise<void> = async () => {},
): Promise<number> {
  await failRunnerSandboxes(tx, runner.id, nowMs);
  // Its session sandboxes died with it: those sessions end (runner_lost), each audited.
  await endSessionsFor(tx, await activeSessionsOfRunner(tx, runner.id), 'runner_lost', runner.id, nowMs);
  await endServicesFor(tx, await liveServicesOf(tx, 'runner_id', runner.id), 'runner_lost', runner.id, nowMs);
  await releaseCanceledReports(tx, runner.id);
  const jobs = await runningJobsOf(tx, runner.id);
  for (const job of jobs) {
    const outcome = await requeueOrFail(tx, job, reason, nowMs);
    told.push(recoveryEvent(job, outcome, reason, nowMs));
    await auditRunnerAction(tx, nowMs, {
      tenant_id: job.tenant_id,
      actor_id: runner.id,
      action: outcome === 'requeued' ? 'job.requeue' : 'job.fail',
      resource_type: 'job',
      resource_id: job.id,
      subject_agent_id: job.agent_id,
      details: { attempt: job.attempt, reason },
    });
    if (outcome === 'failed') await onFailed(job);
  }
  return jobs.length;
}

/**
 * Whether a runner is alive: it has a valid credential and heartbeated within the offline window (the
 * reaper may not have swept it yet). A live runner's name is never taken over with the join token alone.
 */
function isAlive(runner: RunnerRow, nowMs: number, offlineAfterMs: number): boolean {
  if (runner.credential_hash === null || runner.status === 'offline' || runner.last_heartbeat_at === null) return false;
  return nowMs - Date.parse(runner.last_heartbeat_at) < offlineAfterMs;
}

/**
 * Registers a runner and issues its own credential. A known name is the same node after a restart:
 * whatever it ran before is gone with its old process, so those jobs go back to the queue now instead of
 * waiting for their leases. With the join token alone a name is taken only when it is new or its runner
 * is gone (offline, or its credential revoked); a node proves it is the live one by registering with its
 * current credential (`provenRunnerId`), which stays valid (the answer's `credential` is then null).
 */
export async function registerRunner(
  deps: JobDeps,
  req: RegisterRunnerRequest,
  provenRunnerId?: string,
): Promise<RegisterRunnerResponse> {
  const nowMs = deps.clock.nowMs();
  const admit = (existing: RunnerRow | undefined) => {
    if (provenRunnerId !== undefined && existing?.id !== provenRunnerId) {
      throw new KilnError('CONFLICT', `this credential is runner ${provenRunnerId}'s, not the runner named "${req.name}"`, {
        field: 'body.name',
      });
    }
    if (provenRunnerId === undefined && existing && isAlive(existing, nowMs, deps.fleet.offlineAfterMs)) {
      throw new KilnError(
        'CONFLICT',
        `the runner named "${req.name}" (${existing.id}) is alive; register with its credential (kept in its data dir), ` +
          'pick another name, or wait until it is offline',
        { field: 'body.name' },
      );
    }
  };
  const wakes = new WorkflowWakes();
  const told: PlaneEvent[] = [];
  const recovered = await deps.store.transaction(async (tx) => {
    told.length = 0;
    const { runner, restarted } = await upsertRunner(tx, req, nowMs, admit);
    told.push({ type: 'runner_state', runnerId: runner.id, name: req.name, from: null, to: 'healthy', reason: restarted ? 'registered again' : 'registered' });
    let credential: string | null = null;
    if (provenRunnerId === undefined) {
      const secret = newSecret();
      credential = formatRunnerCredential(runner.id, secret);
      await setRunnerCredential(tx, runner.id, hashSecret(secret), planeSigningKey(credential));
    }
    const advance = (job: JobRow) => advanceWorkflowOfJob(deps, tx, job.id, nowMs, wakes);
    const count = restarted ? await recoverRunnerWork(tx, runner, 'runner restarted', nowMs, told, advance) : 0;
    await auditRunnerAction(tx, nowMs, {
      tenant_id: null,
      actor_id: runner.id,
      action: restarted ? 'runner.reregister' : 'runner.register',
      resource_type: 'runner',
      resource_id: runner.id,
      subject_agent_id: null,
      details: {
        name: req.name,
        zone: req.zone,
        capacity: req.capacity,
        languages: req.languages.length,
        recovered_jobs: count,
        proof: provenRunnerId === undefined ? 'join_token' : 'credential',
      },
    });
    return { runner, count, credential };
  });
  wakes.publish(deps);
  for (const event of told) deps.events.emit(event);
  if (recovered.count > 0) deps.notifier.publish(topics.work);
  return {
    runner_id: recovered.runner.id,
    credential: recovered.credential,
    heartbeat_interval_ms: deps.fleet.heartbeatIntervalMs,
    lease_ttl_ms: deps.fleet.leaseTtlMs,
    max_request_bytes: deps.fleet.maxRequestBytes,
    accepts_live_bytes: true,
  };
}

/**
 * Refuses a report about a job another runner holds (a forged report, or a confused node): the job's
 * `runner_id` is the one its lease went to, and only that runner's credential may speak for it.
 */
export function assertHeldBy(job: { id: string; runner_id: string | null }, runnerId: string): void {
  if (job.runner_id !== null && job.runner_id !== runnerId) {
    throw new KilnError('FORBIDDEN', `job ${job.id} is leased to another runner; a runner reports only on its own leases`);
  }
}

async function requireRunner(deps: JobDeps, runnerId: string): Promise<RunnerRow> {
  const runner = await getRunner(deps.store, runnerId);
  if (!runner) throw new KilnError('NOT_FOUND', `runner ${runnerId} is not registered; register again`, { field: 'body.runner_id' });
  return runner;
}

/**
 * A heartbeat: marks the node alive, extends the leases it holds, and answers which of them it must
 * stop. With nothing to stop, it waits up to one interval for a cancel (a long poll), so a cancel
 * reaches the sandbox in milliseconds rather than at the next beat.
 */
export async function runnerHeartbeat(deps: JobDeps, req: BoundToRunner<HeartbeatRequest>, signal?: AbortSignal): Promise<HeartbeatResponse> {
  const cancel = pendingWake(deps.notifier, topics.runner(req.runner_id), deps.fleet.heartbeatIntervalMs, signal);
  try {
    return await heartbeatAnswer(deps, req, cancel.wake);
  } finally {
    cancel.cancel();
  }
}

async function heartbeatAnswer(deps: JobDeps, req: BoundToRunner<HeartbeatRequest>, wake: Promise<unknown>): Promise<HeartbeatResponse> {
  const runner = await deps.store.transaction(async (tx) => {
    const found = await getRunner(tx, req.runner_id);
    if (!found) throw new KilnError('NOT_FOUND', `runner ${req.runner_id} is not registered; register again`);
    const touched = await touchRunner(tx, found, deps.clock.nowMs(), req.pool);
    await extendLeases(tx, { runnerId: found.id, leases: req.leases, nowMs: deps.clock.nowMs(), leaseTtlMs: deps.fleet.leaseTtlMs });
    return { ...touched, was: found.status };
  });
  if (runner.was !== 'healthy') {
    deps.events.emit({ type: 'runner_state', runnerId: runner.id, name: runner.name, from: runner.was, to: 'healthy', reason: 'heartbeat' });
  }
  let stop = await leasesToStop(deps.store, { runnerId: runner.id, leases: req.leases });
  if (stop.length === 0 && req.leases.length > 0) {
    await wake;
    stop = await leasesToStop(deps.store, { runnerId: runner.id, leases: req.leases });
  }
  return { status: 'healthy', draining: runner.draining === 1, stop };
}

/**
 * A lease poll: claims queued work the runner can take, or waits (long poll) until work appears or
 * `wait_ms` passes. A degraded, offline or draining runner gets nothing.
 */
export async function leaseWork(
  deps: JobDeps,
  req: BoundToRunner<LeaseRequest>,
  signal?: AbortSignal,
  /** the runner's row its authentication just read: the first claim uses it, later rechecks read it again */
  authenticated?: RunnerRow,
): Promise<LeaseResponse> {
  const deadline = Date.now() + req.wait_ms;
  let known = authenticated?.id === req.runner_id ? authenticated : undefined;
  for (;;) {
    const recheckMs = Math.max(0, Math.min(deadline - Date.now(), deps.fleet.leaseRecheckIntervalMs));
    const { wake, cancel } = pendingWake(deps.notifier, topics.work, recheckMs, signal);
    try {
      const runner = known ?? (await requireRunner(deps, req.runner_id));
      known = undefined;
      const answer = await claimOnce(deps, req, runner);
      if (answer) {
        // A full answer may have left claimable work: on PostgreSQL another claim may have passed over
        // a tenant this one held. Polls waiting elsewhere look again.
        if (answer.leases.length >= req.free_slots) deps.notifier.publish(topics.work);
        return answer;
      }
      if (Date.now() >= deadline || signal?.aborted) return { leases: [] };
      await wake;
    } finally {
      cancel();
    }
  }
}

/** The languages and versions a runner's registration offers, as the claim reads them. */
interface OfferedReach {
  languages: string[];
  versions: Record<string, string[]>;
}

/**
 * Parsed reaches by the registration's column text: a runner's offer changes only when it registers, and
 * the whole catalog's JSON is parsed on every lease poll otherwise. Bounded: the fleet's distinct
 * registrations, at most REACH_CACHE_MAX, oldest dropped first.
 */
const parsedReaches = new Map<string, OfferedReach>();
const REACH_CACHE_MAX = 64;

function runnerReach(column: string): OfferedReach {
  const known = parsedReaches.get(column);
  if (known) return known;
  const offers = JSON.parse(column) as ({ name: string; version?: string } | string)[];
  const versions: Record<string, string[]> = {};
  for (const o of offers) {
    const offered = (versions[typeof o === 'string' ? o : o.name] ??= []);
    if (typeof o !== 'string' && o.version !== undefined) offered.push(o.version);
  }
  const reach = { languages: Object.keys(versions), versions };
  if (parsedReaches.size >= REACH_CACHE_MAX) parsedReaches.delete(parsedReaches.keys().next().value!);
  parsedReaches.set(column, reach);
  return reach;
}

/** One claim attempt for a lease poll: the leases, or undefined when there was nothing to hand out. */
async function claimOnce(deps: JobDeps, req: BoundToRunner<LeaseRequest>, runner: RunnerRow): Promise<LeaseResponse | undefined> {
  if (runner.status === 'healthy' && runner.draining === 0 && req.free_slots > 0) {
    const { languages, versions } = runnerReach(runner.languages);
    const nowMs = deps.clock.nowMs();
    const claimed = await deps.store.transaction(async (tx) => {
      const jobs = await claimJobs(tx, {
        runnerId: runner.id,
        zone: runner.zone,
        languages,
        versions,
        freeSlots: req.free_slots,
        nowMs,
        leaseTtlMs: deps.fleet.leaseTtlMs,
      });
      for (const c of jobs) {
        await auditRunnerAction(tx, nowMs, {
          tenant_id: c.job.tenant_id,
          actor_id: runner.id,
          action: 'job.lease',
          resource_type: 'job',
          resource_id: c.job.id,
          subject_agent_id: c.job.agent_id,
          details: { attempt: c.job.attempt, sandbox_id: c.sandboxId },
        });
      }
      return withSecretEnv(deps, tx, jobs);
    });
    if (claimed.length > 0) {
      for (const c of claimed) {
        deps.events.emit({ type: 'lease_granted', jobId: c.job.id, runnerId: runner.id, language: c.job.language, attempt: c.job.attempt });
        deps.notifier.publish(topics.job(c.job.id), { type: 'status', job: jobFromRow(c.job) });
      }
      return {
        leases: claimed.map((c) => ({
          job_id: c.job.id,
          tenant_id: c.job.tenant_id,
          attempt: c.job.attempt,
          sandbox_id: c.sandboxId,
          lease_expires_at: toRfc3339(nowMs + deps.fleet.leaseTtlMs),
          spec: c.spec,
        })),
      };
    }
  }
  return undefined;
}

/**
 * Output and start events of a running attempt: the sandbox is running; chunks go to live watchers, and
 * output the runner could not deliver is counted and announced to them.
 */
export async function reportJobEvents(deps: JobDeps, runnerId: string, jobId: string, report: JobEventsReport): Promise<void> {
  const job = await getJob(deps.store, jobId);
  if (!job) throw new KilnError('NOT_FOUND', `job ${jobId} does not exist`);
  if (job.attempt !== report.attempt || (job.status !== 'running' && job.status !== 'canceled')) {
    throw new KilnError('STALE_ATTEMPT', `attempt ${report.attempt} of job ${jobId} is not the current one`);
  }
  assertHeldBy(job, runnerId);
  for (const event of report.events) {
    if (event.type === 'started') {
      if (job.sandbox_id) await deps.store.transaction((tx) => markSandboxRunning(tx, job.sandbox_id!));
    } else if (event.type === 'output_lost') {
      publishLoss(deps, jobId, event.stream, event.reason, event.bytes);
    } else {
      await publishOutput(deps, jobId, event.stream, Buffer.from(event.data_base64, 'base64'));
    }
  }
  // The report is answered once its output is on its way to every replica: a runner that writes faster
  // than NOTIFY carries is slowed down (its own backlog is bounded and says what it drops).
  await deps.notifier.sent();
}

/**
 * Stores a blob (stdout, stderr, an artifact) for the current attempt of a job, streamed and hashed.
 * Bounded by the job's own limits, so a runner cannot fill the store past what the policy allows.
 */
export async function uploadJobBlob(
  deps: JobDeps,
  runnerId: string,
  jobId: string,
  attempt: number,
  body: Readable,
  declaredBytes?: number,
): Promise<UploadedBlob> {
  const job = await getJob(deps.store, jobId);
  if (!job) {
    body.resume();
    throw new KilnError('NOT_FOUND', `job ${jobId} does not exist`);
  }
  if (job.attempt !== attempt || (job.status !== 'running' && job.status !== 'canceled')) {
    body.resume();
    throw new KilnError('STALE_ATTEMPT', `attempt ${attempt} of job ${jobId} is not the current one`);
  }
  try {
    assertHeldBy(job, runnerId);
  } catch (err) {
    body.resume();
    throw err;
  }
  const spec = JSON.parse(job.request) as { limits: { output_bytes: number }; artifacts: { max_bytes: number } };
  const maxBytes = Math.max(spec.limits.output_bytes, spec.artifacts.max_bytes);
  // Bounded by the job's limits and by the room left in the tenant's artifact storage quota.
  return receiveUpload(deps, { tenantId: job.tenant_id, jobId, attempt }, body, { maxBytes, declaredBytes });
}
