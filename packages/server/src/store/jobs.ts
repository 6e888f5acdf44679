import { KilnError, newId, toRfc3339, type JobSpec } from '@kiln/core';
import type { Selectable } from 'kysely';
import { jobMachine, sandboxInstanceMachine } from '../domain/machines.js';
import { assertTransition, sourcesOf, type StateMachine } from '../domain/state-machine.js';
import { lockActiveTenant, queueHead, recordServedTurn, runningJobCount, tenantsInTurnOrder } from './job-queue.js';
import type { JobsTable } from './schema.js';
import type { DbHandle, TxHandle } from './store.js';
import { precompiled } from './precompiled.js';

export type JobRow = Selectable<JobsTable>;

/** What a runner offers when it asks for work. */
export interface ClaimRequest {
  runnerId: string;
  zone: string | null;
  languages: string[];
  /** The versions it offers of each language (none: it takes only jobs that asked for no version). */
  versions?: Readonly<Record<string, readonly string[]>>;
  freeSlots: number;
  nowMs: number;
  leaseTtlMs: number;
}

/** A job handed to a runner: the row as claimed and the sandbox instance made for this attempt. */
export interface ClaimedJob {
  job: JobRow;
  sandboxId: string;
  spec: JobSpec;
}

/** What a new job is made of; everything else starts empty (queued, attempt 0, no lease, no result). */
export type NewJob = Pick<
  JobRow,
  'tenant_id' | 'agent_id' | 'policy_id' | 'policy_version' | 'language' | 'language_version' | 'request' | 'zone' | 'max_attempts' | 'max_running_jobs'
> & { flags?: number };

/** A job row as it is first written: queued, with nothing run yet. */
export function queuedJobRow(job: NewJob, nowMs: number): JobRow {
  const nowIso = toRfc3339(nowMs);
  return {
    ...job,
    id: newId('job', nowMs),
    status: jobMachine.initial,
    requested_at: nowIso,
    started_at: null,
    completed_at: null,
    exit_status: null,
    resource_usage: null,
    output_refs: null,
    verdict: null,
    attempt: 0,
    runner_id: null,
    lease_expires_at: null,
    sandbox_id: null,
    stdout_inline: null,
    stderr_inline: null,
    rejected_artifacts: null,
    compile_result: null,
    error: null,
    updated_at: nowIso,
    flags: job.flags ?? 0,
  };
}

const jobById = precompiled<[id: string], JobRow>((db, id) => db.selectFrom('jobs').selectAll().where('id', '=', id), 1);
const jobByIdForUpdate = precompiled<[id: string], JobRow>((db, id) => db.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate(), 1);

export async function getJob(h: DbHandle, id: string): Promise<JobRow | undefined> {
  return (await jobById(h, id)).rows[0];
}

/** Moves one job's state through its transition table; the WHERE on the old status makes it race-safe. */
export async function moveJob(
  tx: TxHandle,
  job: JobRow,
  to: JobRow['status'],
  values: Partial<JobRow>,
  nowMs: number,
): Promise<boolean> {
  assertTransition(jobMachine, job.status as never, to as never, job.id);
  const result = await tx.db
    .updateTable('jobs')
    .set({ ...values, status: to, updated_at: toRfc3339(nowMs) })
    .where('id', '=', job.id)
    .where('status', '=', job.status)
    .where('attempt', '=', job.attempt)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Ends a sandbox instance (terminated or failed) if it is not ended already. */
export async function endSandbox(
  tx: TxHandle,
  sandboxId: string,
  to: 'terminated' | 'failed',
  nowMs: number,
): Promise<void> {
  await tx.db
    .updateTable('sandbox_instances')
    .set({ status: to, terminated_at: toRfc3339(nowMs) })
    .where('id', '=', sandboxId)
    .where('status', 'in', sourcesOf(sandboxInstanceMachine as StateMachine<string>, to))
    .execute();
}

/**
 * Claims queued jobs for a runner in the caller's transaction, sharing the free slots between tenants by
 * **round robin, least recently served first** (unweighted): one job per tenant per round, tenants in
 * the order of the turn at which each last got a job (never served first), as many rounds as slots
 * remain; within a tenant, oldest first. A tenant at its running-job cap (`max_running_jobs`), with
 * nothing this runner can take (language, zone), suspended, or whose next job belongs to a disabled agent
 * is passed over, so one tenant's backlog delays only that tenant. The cost is a few index seeks per
 * tenant with queued work plus a few statements per job claimed, whatever the length of any queue.
 *
 * PostgreSQL: a tenant's row is locked while its cap is counted and its jobs claimed, and each job row
 * with FOR UPDATE SKIP LOCKED, so replicas claiming at once never hand out the same job nor pass a cap.
 * A claim waits for a tenant's lock only when that tenant's id is above every tenant lock it holds (and
 * skips the tenant otherwise): waits always go up the id order, so concurrent claims cannot deadlock.
 * SQLite has a single writer.
 *
 * Each claimed job becomes `running` with attempt+1, a lease expiry and a new `provisioning` sandbox.
 * The answer is oldest first.
 */
export async function claimJobs(tx: TxHandle, req: ClaimRequest): Promise<ClaimedJob[]> {
  if (req.freeSlots <= 0 || req.languages.length === 0) return [];
  const claim: ClaimState = { tx, req, highestLock: undefined };
  const inTurn = await tenantsInTurnOrder(tx);
  let round: TenantTurn[] = inTurn.ids.map((id) => ({ id, locked: false, running: undefined, skipped: [] }));
  let turn = inTurn.lastTurn;
  const claimed: ClaimedJob[] = [];
  const served = new Map<string, number>();
  while (round.length > 0 && claimed.length < req.freeSlots) {
    const next: TenantTurn[] = [];
    for (const tenant of round) {
      if (claimed.length >= req.freeSlots) break;
      const job = await claimNextOf(claim, tenant);
      if (!job) continue; // passed over for the rest of this claim
      claimed.push(job);
      served.set(tenant.id, ++turn);
      next.push(tenant);
    }
    round = next;
  }
  for (const [tenantId, lastTurn] of served) await recordServedTurn(tx, tenantId, lastTurn);
  return claimed.sort((a, b) => compareRequestOrder(a.job, b.job));
}

/** Oldest first, ties by id: the order of the columns as text, as the database sorts them. */
function compareRequestOrder(a: JobRow, b: JobRow): number {
  const [x, y] = [`${a.requested_at} ${a.id}`, `${b.requested_at} ${b.id}`];
  return x < y ? -1 : x > y ? 1 : 0;
}

interface ClaimState {
  tx: TxHandle;
  req: ClaimRequest;
  /** the highest tenant id this claim holds a lock on (PostgreSQL) */
  highestLock: string | undefined;
}

/** A tenant's part in one claim. */
interface TenantTurn {
  id: string;
  locked: boolean;
  /** its running jobs, counted under its lock */
  running: number | undefined;
  /** queued jobs another transaction holds (a cancel in flight): looked past in this claim */
  skipped: string[];
  /** its last queued job this runner can take is claimed: its queue is not read again in this claim */
  exhausted?: boolean;
}

// Queued jobs held by another transaction looked past per tenant, before it waits for the next claim.
const MAX_HELD_HEADS = 3;

/** The tenant's next job for this claim, claimed; undefined when the tenant is passed over. */
async function claimNextOf(claim: ClaimState, tenant: TenantTurn): Promise<ClaimedJob | undefined> {
  const { tx, req } = claim;
  if (tenant.exhausted) return undefined;
  if (tx.dialect === 'postgres' && !tenant.locked) {
    // Unlocked look first: a tenant at its cap or with nothing for this runner is passed over without a lock.
    const head = await queueHead(tx, tenant.id, req, tenant.skipped);
    if (!head || (await runningJobCount(tx, tenant.id)) >= head.max_running_jobs) return undefined;
    const wait = claim.highestLock === undefined || tenant.id > claim.highestLock;
    if (!(await lockActiveTenant(tx, tenant.id, wait))) return undefined;
    tenant.locked = true;
    if (wait) claim.highestLock = tenant.id;
  }
  tenant.running ??= await runningJobCount(tx, tenant.id);
  while (tenant.skipped.length < MAX_HELD_HEADS) {
    const head = await queueHead(tx, tenant.id, req, tenant.skipped);
    if (!head || tenant.running >= head.max_running_jobs) return undefined;
    const claimed = tx.dialect === 'sqlite' ? await leaseInPlace(tx, req, head.id) : await pickAndLease(tx, req, head.id);
    if (!claimed) {
      tenant.skipped.push(head.id);
      continue;
    }
    tenant.running += 1;
    tenant.exhausted = head.lastForRunner === true;
    return claimed;
  }
  return undefined;
}

/** PostgreSQL: the job row locked (skipping one another transaction holds), then leased. */
async function pickAndLease(tx: TxHandle, req: ClaimRequest, jobId: string): Promise<ClaimedJob | undefined> {
  const job = await tx.db.selectFrom('jobs').selectAll().where('id', '=', jobId).where('status', '=', 'queued').forUpdate().skipLocked().executeTakeFirst();
  return job && leaseJob(tx, req, job);
}

/**
 * SQLite (one writer, nothing to lock): the queued job becomes running in one `update … returning`,
 * so the claim neither reads the row first nor reads back what it wrote.
 */
async function leaseInPlace(tx: TxHandle, req: ClaimRequest, jobId: string): Promise<ClaimedJob | undefined> {
  assertTransition(jobMachine, 'queued' as never, 'running' as never, jobId);
  const nowIso = toRfc3339(req.nowMs);
  const sandboxId = newId('sandbox', req.nowMs);
  const [job] = (await leaseQueued(tx, req.runnerId, toRfc3339(req.nowMs + req.leaseTtlMs), sandboxId, nowIso, jobId)).rows;
  if (!job) return undefined;
  await insertJobSandbox(tx, req, job.id, sandboxId, nowIso);
  return { job, sandboxId, spec: JSON.parse(job.request) as JobSpec };
}

/** SQLite's claim of one queued job: running with attempt+1, a lease and its sandbox, read back as written. */
const leaseQueued = precompiled<[runnerId: string, leaseExpiresAt: string, sandboxId: string, nowIso: string, jobId: string], JobRow>(
  (db, runnerId, leaseExpiresAt, sandboxId, nowIso, jobId) =>
    db
      .updateTable('jobs')
      .set((eb) => ({
        attempt: eb('attempt', '+', 1),
        runner_id: runnerId,
        lease_expires_at: leaseExpiresAt,
        sandbox_id: sandboxId,
        started_at: eb.fn.coalesce('started_at', eb.val(nowIso)),
        status: 'running',
        updated_at: nowIso,
      }))
      .where('id', '=', jobId)
      .where('status', '=', 'queued')
      .returningAll(),
  5,
);

const insertSandbox = precompiled<[id: string, jobId: string, runnerId: string, createdAt: string], never>(
  (db, id, jobId, runnerId, createdAt) =>
    db.insertInto('sandbox_instances').values({
      id,
      kind: 'job',
      job_id: jobId,
      session_id: null,
      service_id: null,
      runner_id: runnerId,
      status: sandboxInstanceMachine.initial,
      created_at: createdAt,
      terminated_at: null,
    }),
  4,
);

async function insertJobSandbox(tx: TxHandle, req: ClaimRequest, jobId: string, sandboxId: string, nowIso: string): Promise<void> {
  await insertSandbox(tx, sandboxId, jobId, req.runnerId, nowIso);
}

/** Makes a queued job running on the claiming runner, with a new sandbox instance for this attempt. */
async function leaseJob(tx: TxHandle, req: ClaimRequest, job: JobRow): Promise<ClaimedJob | undefined> {
  const nowIso = toRfc3339(req.nowMs);
  const sandboxId = newId('sandbox', req.nowMs);
  const attempt = job.attempt + 1;
  const moved = await moveJob(
    tx,
    job,
    'running',
    {
      attempt,
      runner_id: req.runnerId,
      lease_expires_at: toRfc3339(req.nowMs + req.leaseTtlMs),
      sandbox_id: sandboxId,
      started_at: job.started_at ?? nowIso,
    },
    req.nowMs,
  );
  if (!moved) return undefined;
  await insertJobSandbox(tx, req, job.id, sandboxId, nowIso);
  return {
    job: { ...job, status: 'running', attempt, runner_id: req.runnerId, sandbox_id: sandboxId },
    sandboxId,
    spec: JSON.parse(job.request) as JobSpec,
  };
}

/** The job as a runner must hold it for a report to count: this attempt, still held or already reported by it. */
export async function getLeasedJob(
  tx: TxHandle,
  args: { jobId: string; attempt: number },
): Promise<JobRow> {
  const [job] = (await (tx.dialect === 'postgres' ? jobByIdForUpdate : jobById)(tx, args.jobId)).rows;
  if (!job) throw new KilnError('NOT_FOUND', `job ${args.jobId} does not exist`);
  // A job canceled while it ran still takes its runner's final report (outputs, usage), once.
  const held = job.status === 'running' || (job.status === 'canceled' && job.output_refs === null);
  // This attempt's report is recorded already (a retry that raced the first): the caller acknowledges it.
  const reported = job.output_refs !== null;
  // The attempt number alone fences: each lease of a job bumps it, so an old holder cannot match.
  if (job.attempt !== args.attempt || !(held || reported)) {
    throw new KilnError(
      'STALE_ATTEMPT',
      `attempt ${args.attempt} of job ${args.jobId} is no longer leased to this runner (job is ${job.status}, attempt ${job.attempt})`,
    );
  }
  return job;
}

/**
 * Requeues a running job whose lease is lost (runner offline, lease expired, runner restarted), or fails
 * it with system_error once its attempts are used up. Its sandbox instance becomes `failed`.
 */
export async function requeueOrFail(tx: TxHandle, job: JobRow, reason: string, nowMs: number): Promise<'requeued' | 'failed'> {
  if (job.sandbox_id) await endSandbox(tx, job.sandbox_id, 'failed', nowMs);
  if (job.attempt < job.max_attempts) {
    await moveJob(tx, job, 'queued', { runner_id: null, lease_expires_at: null, sandbox_id: null, error: reason }, nowMs);
    return 'requeued';
  }
  await moveJob(
    tx,
    job,
    'failed',
    {
      verdict: 'system_error',
      completed_at: toRfc3339(nowMs),
      lease_expires_at: null,
      error: `${reason}; no attempts left (${job.max_attempts})`,
    },
    nowMs,
  );
  return 'failed';
}

/**
 * Jobs canceled while they ran on this runner and not yet reported: the runner is gone, so no report will
 * come. Their `runner_id` is cleared, which is how readers (the event stream) know the job is settled.
 */
export async function releaseCanceledReports(tx: TxHandle, runnerId: string): Promise<number> {
  const result = await tx.db
    .updateTable('jobs')
    .set({ runner_id: null })
    .where('runner_id', '=', runnerId)
    .where('status', '=', 'canceled')
    .where('output_refs', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Running jobs whose lease ran out. */
export async function expiredLeases(h: DbHandle, nowMs: number): Promise<JobRow[]> {
  const query = h.db
    .selectFrom('jobs')
    .selectAll()
    .where('status', '=', 'running')
    .where('lease_expires_at', '<', toRfc3339(nowMs));
  // In a sweep's transaction: a job another replica's sweep is recovering is skipped, not recovered twice.
  return (h.dialect === 'postgres' ? query.forUpdate().skipLocked() : query).execute();
}

export async function runningJobsOf(h: DbHandle, runnerId: string): Promise<JobRow[]> {
  return h.db.selectFrom('jobs').selectAll().where('runner_id', '=', runnerId).where('status', '=', 'running').execute();
}

/** Extends the leases a runner says it still holds; returns the ids whose lease was extended. */
export async function extendLeases(
  tx: TxHandle,
  args: { runnerId: string; leases: { job_id: string; attempt: number }[]; nowMs: number; leaseTtlMs: number },
): Promise<void> {
  const expires = toRfc3339(args.nowMs + args.leaseTtlMs);
  for (const lease of args.leases) {
    await tx.db
      .updateTable('jobs')
      .set({ lease_expires_at: expires })
      .where('id', '=', lease.job_id)
      .where('attempt', '=', lease.attempt)
      .where('runner_id', '=', args.runnerId)
      .where('status', '=', 'running')
      .execute();
  }
}

/** Of the leases a runner reports, those it must stop: canceled by a user, or no longer its own. */
export async function leasesToStop(
  h: DbHandle,
  args: { runnerId: string; leases: { job_id: string; attempt: number }[] },
): Promise<{ job_id: string; attempt: number; reason: 'canceled' | 'lost' }[]> {
  if (args.leases.length === 0) return [];
  const rows = await h.db
    .selectFrom('jobs')
    .select(['id', 'status', 'attempt', 'runner_id'])
    .where('id', 'in', args.leases.map((l) => l.job_id))
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  const stop: { job_id: string; attempt: number; reason: 'canceled' | 'lost' }[] = [];
  for (const lease of args.leases) {
    const row = byId.get(lease.job_id);
    if (row && row.status === 'canceled' && row.attempt === lease.attempt && row.runner_id === args.runnerId) {
      stop.push({ ...lease, reason: 'canceled' });
    } else if (!row || row.status !== 'running' || row.attempt !== lease.attempt || row.runner_id !== args.runnerId) {
      stop.push({ ...lease, reason: 'lost' });
    }
  }
  return stop;
}
