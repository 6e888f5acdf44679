import {
  DEFAULT_POLICY_NAME,
  KilnError,
  toRfc3339,
  type CompileLimits,
  type CreateJobRequest,
  type Job,
  type JobSpec,
  type LanguageOffer,
  type Limits,
  type Policy,
  type TenantQuota,
} from '@kiln/core';
import { JobFlag } from '../domain/job-flags.js';
import { isVersionRequest, resolveVersion } from '../domain/languages/versions.js';
import { limitCeilings } from '../domain/quota.js';
import { findAgent } from '../store/agents.js';
import { getJob, moveJob, queuedJobRow, type JobRow, type NewJob } from '../store/jobs.js';
import { decodeCursor, page } from '../store/pagination.js';
import { findPolicy, findPolicyByName } from '../store/policies.js';
import { countQueuedJobs, lockTenantForSubmission, ownerStatusForSubmission } from '../store/quotas.js';
import { findOffer, listFleetLanguages } from '../store/runners.js';
import type { DbHandle, TxHandle } from '../store/store.js';
import { notFound, requireTenantActive, requireTenantMember } from './access.js';
import { auditSuccess } from './audit.js';
import type { Principal } from './context.js';
import type { JobDeps } from './job-deps.js';
import { cachesOf } from './caching/short-lived-cache.js';
import { isTerminalStatus, jobFromRow } from './job-views.js';
import { topics } from './notifier.js';
import { effectiveQuota } from './quotas.js';
import { jobEnded } from './plane-events.js';

import { storeSecretEnv } from './secret-env.js';

/** What a client is told to wait when the tenant's queue is full: about the time a few jobs take to start. */
const QUEUE_FULL_RETRY_AFTER_SECONDS = 5;
import { advanceWorkflowOfJob, WorkflowWakes } from './workflows/engine.js';
import { listTenantWork, type TenantWorkListQuery } from './tenant-lists.js';

/** The agent a job or session is for: an agent key's own, or one its tenant admin names. */
export async function resolveAgent(deps: JobDeps, principal: Principal, tenantId: string, requested?: string): Promise<string | null> {
  if (principal.kind === 'agent') {
    if (requested !== undefined && requested !== principal.agentId) {
      throw new KilnError('FORBIDDEN', 'an agent key submits jobs as its own agent; drop agent_id', { field: 'body.agent_id' });
    }
    return principal.agentId;
  }
  if (requested === undefined) return null;
  const agent = await findAgent(deps.store, tenantId, requested);
  if (!agent) throw new KilnError('NOT_FOUND', `agent ${requested} does not exist`, { field: 'body.agent_id' });
  if (agent.status !== 'active') {
    throw new KilnError('AGENT_DISABLED', `agent ${requested} is disabled; enable it or submit without it`, {
      field: 'body.agent_id',
    });
  }
  return agent.id;
}

export async function resolvePolicy(deps: JobDeps, tenantId: string, policyId?: string): Promise<Policy> {
  // Through the store's short-lived cache (CACHE_TTL_MS): publishing through this replica drops it.
  const cache = cachesOf(deps.store).policies;
  const key = `${tenantId}/${policyId ?? `#${DEFAULT_POLICY_NAME}`}`;
  const nowMs = deps.clock.nowMs();
  const hit = cache.get(key, nowMs);
  const policy = hit
    ? hit.value
    : policyId
      ? await findPolicy(deps.store, tenantId, policyId)
      : await findPolicyByName(deps.store, tenantId, DEFAULT_POLICY_NAME);
  if (!hit) cache.set(key, policy, nowMs);
  if (!policy) {
    throw policyId
      ? new KilnError('NOT_FOUND', `policy ${policyId} does not exist`, { field: 'body.policy_id' })
      : new KilnError('NOT_FOUND', 'this tenant has no default policy; name one with policy_id');
  }
  return policy;
}

/**
 * Requests may ask for less than the policy allows, never more: the effective limits are the policy's
 * ceilings, lowered by the tenant's quota, lowered by what the request asks. Asking for more is
 * POLICY_VIOLATION naming the field and the ceiling.
 */
export function effectiveLimits(policy: Policy, requested: CreateJobRequest['limits'], quota: TenantQuota): Limits {
  const ceilings = limitCeilings(policy.ruleset.limits, quota);
  const limits: Limits = { ...ceilings };
  for (const [name, value] of Object.entries(requested ?? {}) as [keyof Limits, number | undefined][]) {
    if (value === undefined) continue;
    const ceiling = ceilings[name];
    if (ceiling !== undefined && value > ceiling) {
      const source = ceiling < (policy.ruleset.limits[name] ?? Infinity) ? "the tenant's quota" : `policy ${policy.name} v${policy.version}`;
      throw new KilnError('POLICY_VIOLATION', `limits.${name} asks for ${value}, above the ceiling of ${ceiling} in ${source}`, {
        field: `body.limits.${name}`,
        extra: { ceiling, requested: value, policy_id: policy.id, policy_version: policy.version },
      });
    }
    limits[name] = value;
  }
  return limits;
}

/**
 * A compile step's limits: each at or under the same ceiling as the run's (the policy's, lowered by the
 * quota), refused past it as POLICY_VIOLATION naming `compile_limits.<name>`.
 */
function compileCeilingsChecked(policy: Policy, requested: CompileLimits, quota: TenantQuota): CompileLimits {
  try {
    effectiveLimits(policy, requested, quota);
  } catch (err) {
    if (err instanceof KilnError && err.code === 'POLICY_VIOLATION') {
      throw new KilnError('POLICY_VIOLATION', err.message.replace(/^limits\./, 'compile_limits.'), {
        field: err.field?.replace('body.limits.', 'body.compile_limits.'),
        extra: err.extra,
      });
    }
    throw err;
  }
  return requested;
}

/** The lower of the policy's and the quota's value of each artifact rule. */
function artifactCeilings(policy: Policy, quota: TenantQuota): Policy['ruleset']['artifacts'] {
  const rules = policy.ruleset.artifacts;
  return {
    max_count: Math.min(rules.max_count, quota.artifacts.max_count),
    max_bytes: Math.min(rules.max_bytes, quota.artifacts.max_bytes),
    max_total_bytes: Math.min(rules.max_total_bytes, quota.artifacts.max_total_bytes),
  };
}

/** The tenant's queue is full: 429 with when to try again; nothing was inserted. */
export function queueFull(tenantId: string, cap: number): KilnError {
  return new KilnError(
    'RATE_LIMITED',
    `tenant ${tenantId} has ${cap} jobs queued, its quota's cap; retry when some have started, or cancel queued ones`,
    { extra: { retry_after: QUEUE_FULL_RETRY_AFTER_SECONDS, reason: 'queued_jobs', limit: cap } },
  );
}

/**
 * The offered version a job's `version` asks for: the one spelled exactly so, else the highest in the
 * range (`3.x`, `3`, `*`, `>=3.10 <4`). The job keeps the version it resolved to, so it is placed only on
 * runners that offer exactly that one and its answer says what it ran on.
 */
function pickVersion(offer: LanguageOffer, requested: string): string {
  if (!offer.versions.includes(requested) && !isVersionRequest(requested)) {
    throw new KilnError('VALIDATION_FAILED', `version ${JSON.stringify(requested)} is neither a version nor a range: give e.g. "3.11.2", "3.x", ">=3.10" or "*"`, {
      field: 'body.version',
      errors: [{ field: 'body.version', message: 'not a version or a semver range' }],
    });
  }
  const version = resolveVersion(requested, offer.versions);
  if (version === undefined) {
    throw new KilnError('UNSUPPORTED_LANGUAGE', `${offer.name} ${requested} is not offered; offered: ${offer.versions.join(', ')}`, {
      field: 'body.version',
      extra: { offered: offer.versions },
    });
  }
  return version;
}

/** A job request checked against the tenant's policy, quota and fleet, ready to insert. */
export interface PreparedJob {
  newJob: NewJob;
  policy: Policy;
  quota: TenantQuota;
}

/**
 * Checks a job request as a submission does (agent, policy, language, limits) and freezes its spec;
 * nothing is written. Workflows prepare every step this way before any of them runs.
 */
export async function prepareJob(deps: JobDeps, principal: Principal, input: CreateJobRequest): Promise<PreparedJob> {
  const tenantId = requireTenantMember(principal);
  const agentId = await resolveAgent(deps, principal, tenantId, input.agent_id);
  const policy = await resolvePolicy(deps, tenantId, input.policy_id);
  // An alias (`py`, `c++`) is the language it names: the fleet's runners say which names are aliases.
  const offered = await listFleetLanguages(deps.store);
  const offer = findOffer(offered, input.language);
  const language = offer?.name ?? input.language;
  if (!policy.ruleset.languages.includes(language)) {
    throw new KilnError(
      'POLICY_VIOLATION',
      `language ${language} is not allowed by policy ${policy.name} v${policy.version}; allowed: ${policy.ruleset.languages.join(', ')}`,
      { field: 'body.language', extra: { allowed: policy.ruleset.languages } },
    );
  }
  if (!offer) {
    throw new KilnError(
      'UNSUPPORTED_LANGUAGE',
      `no runner offers ${input.language}; offered now: ${offered.map((o) => o.name).join(', ') || 'none (no runner is up)'}`,
      { field: 'body.language' },
    );
  }
  const version = input.version === undefined ? null : pickVersion(offer, input.version);
  const quota = await effectiveQuota(deps, deps.store, tenantId);
  const limits = effectiveLimits(policy, input.limits, quota);
  const compileLimits = input.compile_limits ? compileCeilingsChecked(policy, input.compile_limits, quota) : undefined;
  const spec: JobSpec = {
    language,
    version,
    code: input.code ?? null,
    files: input.files ?? [],
    entrypoint: input.entrypoint ?? null,
    stdin: input.stdin ?? null,
    ...(input.stdin_open ? { stdin_open: true } : {}),
    args: input.args ?? [],
    env: input.env ?? {},
    limits,
    network: policy.ruleset.network,
    artifacts: artifactCeilings(policy, quota),
    collect: input.collect ?? ['out/**'],
    ...(compileLimits ? { compile_limits: compileLimits } : {}),
    ...(input.compiler_options ? { compiler_options: input.compiler_options } : {}),
  };
  const newJob: NewJob = {
    tenant_id: tenantId,
    agent_id: agentId,
    policy_id: policy.id,
    policy_version: policy.version,
    language,
    language_version: version,
    request: JSON.stringify(spec),
    zone: input.zone ?? null,
    max_attempts: deps.fleet.maxAttempts,
    max_running_jobs: Math.min(policy.ruleset.concurrency.max_running_jobs, quota.concurrency.max_running_jobs),
  };
  return { newJob, policy, quota };
}

/**
 * Submits a job: checked against the tenant's policy and quota and the fleet's languages, queued,
 * audited. A tenant with `concurrency.max_queued_jobs` jobs queued gets 429 RATE_LIMITED.
 */
export async function submitJob(
  deps: JobDeps,
  principal: Principal,
  input: CreateJobRequest,
  origin: { judge0Run?: boolean } = {},
): Promise<Job> {
  const tenantId = requireTenantMember(principal);
  requireTenantActive(principal);
  const { newJob, policy, quota } = await prepareJob(deps, principal, input);
  const hasSecrets = input.secret_env !== undefined && Object.keys(input.secret_env).length > 0;
  const flags = (hasSecrets ? JobFlag.secretEnv : 0) | (origin.judge0Run ? JobFlag.judge0Run : 0);
  const row = queuedJobRow({ ...newJob, flags }, deps.clock.nowMs());
  await deps.store.transaction(async (tx) => {
    // Counted and inserted under the tenant's lock: concurrent submitters cannot both take the last place.
    await lockTenantForSubmission(tx, tenantId);
    await assertStillActive(tx, tenantId, row.agent_id);
    const cap = quota.concurrency.max_queued_jobs;
    if ((await countQueuedJobs(tx, tenantId, cap)) >= cap) throw queueFull(tenantId, cap);
    await tx.db.insertInto('jobs').values(row).execute();
    await storeSecretEnv(deps, tx, row.id, input.secret_env);
    await auditSuccess(deps, tx, principal, {
      action: 'job.create',
      resource_type: 'job',
      resource_id: row.id,
      subject_agent_id: row.agent_id,
      details: { language: row.language, policy_id: policy.id, policy_version: policy.version, zone: row.zone },
    });
  });
  deps.notifier.publish(topics.work);
  return jobFromRow(row);
}

/**
 * The tenant and agent checked again under the submission's locks: a suspension or a disable that commits
 * while this request runs either sees the new job (and cancels it) or makes this check refuse it, never
 * leaves a job queued for a stopped owner. On PostgreSQL the agent row is share-locked so a concurrent
 * disable waits for this insert; SQLite has a single writer.
 */
async function assertStillActive(tx: TxHandle, tenantId: string, agentId: string | null): Promise<void> {
  const owner = await ownerStatusForSubmission(tx, tenantId, agentId);
  if (owner.tenant !== 'active') throw new KilnError('TENANT_SUSPENDED', `tenant ${tenantId} is suspended; new work is refused`);
  if (agentId !== null && owner.agent !== 'active') {
    throw new KilnError('AGENT_DISABLED', `agent ${agentId} is disabled; enable it or submit without it`, { field: 'body.agent_id' });
  }
}

/**
 * A job the caller may see: any of its tenant's for a tenant admin, its own for an agent. Anything else
 * answers 404 exactly like a missing job.
 */
async function loadTenantJob(h: DbHandle, principal: Principal, id: string): Promise<JobRow> {
  const tenantId = requireTenantMember(principal);
  const row = await getJob(h, id);
  if (!row || row.tenant_id !== tenantId || !visibleToAgent(principal, row.agent_id)) throw notFound('job', id);
  return row;
}

/** Agents see only their own work; tenant admins see all of their tenant's. */
export function visibleToAgent(principal: Principal, agentId: string | null): boolean {
  return principal.kind !== 'agent' || principal.agentId === agentId;
}

export function findTenantJob(deps: JobDeps, principal: Principal, id: string): Promise<JobRow> {
  return loadTenantJob(deps.store, principal, id);
}

export async function getTenantJob(deps: JobDeps, principal: Principal, id: string): Promise<Job> {
  return jobFromRow(await findTenantJob(deps, principal, id));
}

export async function listTenantJobs(deps: JobDeps, principal: Principal, query: TenantWorkListQuery) {
  const result = await listTenantWork(deps.store, principal, 'jobs', query);
  return { items: result.items.map(jobFromRow), next_cursor: result.next_cursor };
}

/**
 * Cancels a job: a queued one at once; a running one is marked canceled and its runner told to kill the
 * sandbox (it learns on its next heartbeat, woken at once). A finished job is answered unchanged. A
 * suspended tenant may still cancel its jobs: stopping work is never refused.
 */
export async function cancelJob(deps: JobDeps, principal: Principal, id: string): Promise<Job> {
  const nowMs = deps.clock.nowMs();
  const wakes = new WorkflowWakes();
  const job = await deps.store.transaction(async (tx) => {
    const row = await loadTenantJob(tx, principal, id);
    // Canceling is idempotent: an ended job is answered as it is (a retried cancel must not fail).
    if (isTerminalStatus(row.status)) return { ...row, unchanged: true as const };
    const values = { verdict: 'canceled', completed_at: toRfc3339(nowMs), lease_expires_at: null };
    if (!(await moveJob(tx, row, 'canceled', values, nowMs))) {
      throw new KilnError('CONFLICT', `job ${id} changed while it was being canceled; read it and try again`);
    }
    await auditSuccess(deps, tx, principal, {
      action: 'job.cancel',
      resource_type: 'job',
      resource_id: id,
      subject_agent_id: row.agent_id,
      details: { from: row.status },
    });
    await advanceWorkflowOfJob(deps, tx, id, nowMs, wakes);
    return { ...row, ...values, status: 'canceled', unchanged: false as const };
  });
  wakes.publish(deps);
  const { unchanged, ...row } = job;
  const view = jobFromRow(row);
  if (unchanged) return view;
  if (job.runner_id) {
    // Its runner kills the sandbox and reports; the job's watchers get `end` with that report.
    deps.notifier.publish(topics.runner(job.runner_id));
    deps.notifier.publish(topics.job(id), { type: 'status', job: view });
    // It no longer counts against its tenant's cap: waiting lease polls claim again now.
    deps.notifier.publish(topics.work);
  } else {
    // Never leased: it ends here (a running one ends when its runner reports).
    deps.events.emit(jobEnded(row as JobRow));
    deps.notifier.publish(topics.job(id), { type: 'end', job: view });
  }
  return view;
}

/**
 * Waits until the job is terminal or `timeoutMs` passes; answers the job as it is then. `submitted` is
 * the job its caller just wrote (not read back). One subscription spans the whole wait, so no message
 * falls between two waits: its start (`status`) and its end carry the job as it is, and output changes
 * nothing the answer holds, so the row is read only after a quiet second (a message this replica missed:
 * that is all a lost message can cost) and at the deadline.
 */
export async function waitForJob(
  deps: JobDeps,
  principal: Principal,
  id: string,
  timeoutMs: number,
  signal?: AbortSignal,
  submitted?: Job,
): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  const told = new JobMessages(id);
  const unsubscribe = deps.notifier.subscribe(topics.job(id), (message) => told.add(message));
  try {
    let job = submitted?.id === id ? submitted : jobFromRow(await findTenantJob(deps, principal, id));
    for (;;) {
      if (told.ended) return told.ended;
      if (isTerminalStatus(job.status) || signal?.aborted) return job;
      if (Date.now() >= deadline) return jobFromRow(await findTenantJob(deps, principal, id));
      const heard = await told.next(Math.min(1000, deadline - Date.now()), signal);
      if (signal?.aborted) return told.ended ?? told.latest ?? job; // nobody is left to answer
      job = heard ? (told.latest ?? job) : jobFromRow(await findTenantJob(deps, principal, id));
    }
  } finally {
    unsubscribe();
  }
}

/** What a job's topic told one wait: the job as the last message carried it, its end, a wake-up. */
class JobMessages {
  latest: Job | undefined;
  ended: Job | undefined;
  private unread = false;
  private wake: (() => void) | undefined;

  constructor(private readonly id: string) {}

  add(message: unknown): void {
    const carried = jobCarriedBy(message, this.id);
    if (carried && isTerminalStatus(carried.status)) this.ended = carried;
    else if (carried) this.latest = carried;
    this.unread = true;
    this.wake?.();
  }

  /** True once a message arrived since the last call (at once if one did already), false after `timeoutMs`. */
  next(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.unread || signal?.aborted) {
      const heard = this.unread;
      this.unread = false;
      return Promise.resolve(heard);
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wake = undefined;
        const heard = this.unread;
        this.unread = false;
        resolve(heard);
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }
}

/**
 * The job a message on the job's topic carries (`status` and `end` do; `output` does not). An `end`
 * that says less than the end, or a payload another replica could not fit in a notification, carries none.
 */
function jobCarriedBy(message: unknown, id: string): Job | undefined {
  const m = message as { type?: unknown; job?: Job } | undefined;
  if ((m?.type !== 'end' && m?.type !== 'status') || m.job?.id !== id) return undefined;
  return m.type === 'end' && !isTerminalStatus(m.job.status) ? undefined : m.job;
}
