import {
  KilnError,
  LIMIT_BOUNDS,
  newId,
  toRfc3339,
  type CreateServiceRequest,
  type Limits,
  type Service,
  type ServiceEndReason,
} from '@kiln/core';
import { limitCeilings } from '../../domain/quota.js';
import { appendAuditEvent } from '../../store/audit.js';
import { listRunners } from '../../store/fleet.js';
import { lockTenantForSubmission } from '../../store/quotas.js';
import {
  countLiveServices,
  getService,
  liveServicesByRunner,
  moveService,
  type ServiceRow,
} from '../../store/services.js';
// One sandbox_instances row whatever its owner: the sessions' helper moves a service's too.
import { activeSessionsByRunner, markSessionSandbox as markServiceSandbox } from '../../store/sessions.js';
import type { DbHandle, TxHandle } from '../../store/store.js';
import { notFound, requireTenantActive, requireTenantMember } from '../access.js';
import { auditSuccess } from '../audit.js';
import { destroyPersistentSandbox } from '../egress-audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { resolveAgent, resolvePolicy, visibleToAgent } from '../jobs.js';
import { effectiveQuota } from '../quotas.js';
import { runnerEndpoint, SESSIONS_PER_CAPACITY_SLOT } from '../sessions/lifecycle.js';
import { callRunnerJson, type RunnerEndpoint } from '../sessions/runner-link.js';
import { listTenantWork, type TenantWorkListQuery } from '../tenant-lists.js';
import { readLogTail } from './logs.js';
import type { ServiceHosting } from './hosting.js';

/** What a caller is told to wait when no runner has room for a service. */
const NO_ROOM_RETRY_AFTER_SECONDS = 5;
/** The runner kills a service's command this long after its TTL, should the control plane not have. */
const RUN_MARGIN_MS = 60_000;

interface ServiceSeed {
  command: string | string[];
  env: Record<string, string>;
  files: string[];
  language: string | null;
  readiness: { path: string | null; timeout_ms: number };
  restart: 'never' | 'on-failure';
  ttl_seconds: number;
}

export function serviceFromRow(row: ServiceRow, hosting: ServiceHosting): Service {
  const seed = JSON.parse(row.spec ?? '{}') as ServiceSeed;
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    agent_id: row.agent_id,
    policy_id: row.policy_id,
    policy_version: row.policy_version,
    status: row.status as Service['status'],
    reason: (row.reason as ServiceEndReason | null) ?? null,
    language: seed.language ?? null,
    command: seed.command,
    port: row.port ?? 0,
    env: seed.env ?? {},
    files: seed.files ?? [],
    readiness: seed.readiness,
    ttl_seconds: seed.ttl_seconds,
    restart: seed.restart,
    restarts: row.restarts ?? 0,
    public: row.public === 1,
    zone: row.zone,
    proxy_url: hosting.proxyUrl(row.id),
    runner_id: row.runner_id,
    sandbox_id: row.sandbox_id,
    created_at: row.created_at,
    started_at: row.started_at,
    stopped_at: row.stopped_at,
    expires_at: row.expires_at ?? row.created_at,
    last_activity_at: row.last_activity_at ?? row.created_at,
  };
}

/** A service the caller may see: its tenant's for a tenant admin, its own for an agent; else 404. */
export async function loadVisibleService(h: DbHandle, principal: Principal, id: string): Promise<ServiceRow> {
  const tenantId = requireTenantMember(principal);
  const row = await getService(h, id);
  if (!row || row.tenant_id !== tenantId || !visibleToAgent(principal, row.agent_id)) throw notFound('service', id);
  return row;
}

/**
 * A healthy runner in the zone with an endpoint and room: the least loaded, counting its sessions and
 * services together (both hold a persistent sandbox).
 */
async function placeService(deps: JobDeps, zone: string | undefined) {
  const runners = (await listRunners(deps.store, { limit: 1000 })).filter(
    (r) => r.status === 'healthy' && r.draining === 0 && r.address !== null && r.signing_key !== null && (!zone || r.zone === zone),
  );
  const sessions = await activeSessionsByRunner(deps.store);
  const services = await liveServicesByRunner(deps.store);
  const chosen = runners
    .map((r) => ({ runner: r, load: ((sessions.get(r.id) ?? 0) + (services.get(r.id) ?? 0)) / (r.capacity * SESSIONS_PER_CAPACITY_SLOT) }))
    .filter((c) => c.load < 1)
    .sort((a, b) => a.load - b.load)[0]?.runner;
  if (!chosen) {
    throw new KilnError('RATE_LIMITED', zone ? `no healthy runner with room for a service in zone ${zone}; retry later` : 'no healthy runner with room for a service; retry later', {
      ...(zone ? { field: 'body.zone' } : {}),
      extra: { retry_after: NO_ROOM_RETRY_AFTER_SECONDS, reason: 'no_service_capacity' },
    });
  }
  return chosen;
}

function policyViolation(detail: string, field: string, extra: Record<string, unknown>): KilnError {
  return new KilnError('POLICY_VIOLATION', detail, { field, extra });
}

/**
 * `POST /v1/services` (issue 9, point 1): refused unless the policy's `services.allowed`, within
 * `services.max_running` (and the tenant's quota), `public` only where `services.allow_public`. The
 * sandbox is up and the command launched when it answers `starting`; the reconciler moves it on.
 */
export async function createService(deps: JobDeps, hosting: ServiceHosting, principal: Principal, input: CreateServiceRequest): Promise<Service> {
  const tenantId = requireTenantMember(principal);
  requireTenantActive(principal);
  const agentId = await resolveAgent(deps, principal, tenantId, input.agent_id);
  const policy = await resolvePolicy(deps, tenantId, input.policy_id);
  const quota = await effectiveQuota(deps, deps.store, tenantId);
  const rules = policy.ruleset.services;
  const pinned = { policy_id: policy.id, policy_version: policy.version };
  if (!rules.allowed) {
    throw policyViolation(`policy ${policy.name} v${policy.version} does not allow services (services.allowed is false)`, 'services.allowed', pinned);
  }
  if (input.public && !(rules.allow_public ?? false)) {
    throw policyViolation(`policy ${policy.name} v${policy.version} does not allow public services (services.allow_public is false)`, 'body.public', pinned);
  }
  if (input.language !== undefined && !policy.ruleset.languages.includes(input.language)) {
    throw policyViolation(`language ${input.language} is not in policy ${policy.name}'s languages`, 'body.language', pinned);
  }
  const maxTtl = Math.min(rules.max_ttl_seconds ?? 24 * 3600, Math.floor(LIMIT_BOUNDS.wall_time_ms.max / 1000));
  const ttlSeconds = input.ttl_seconds ?? maxTtl;
  if (ttlSeconds > maxTtl) {
    throw policyViolation(`ttl_seconds ${ttlSeconds} is above the ceiling ${maxTtl}`, 'body.ttl_seconds', { ...pinned, ceiling: maxTtl, requested: ttlSeconds });
  }
  const maxRunning = Math.min(rules.max_running, quota.services.max_running);
  const limits: Limits = limitCeilings(policy.ruleset.limits, quota);
  const runner = await placeService(deps, input.zone);
  const nowMs = deps.clock.nowMs();
  const nowIso = toRfc3339(nowMs);
  const id = newId('service', nowMs);
  const readiness = { path: input.readiness?.path ?? null, timeout_ms: input.readiness?.timeout_ms ?? 30_000 };
  const seed: ServiceSeed = {
    command: input.command,
    env: input.env ?? {},
    files: (input.files ?? []).map((f) => f.path),
    language: input.language ?? null,
    readiness,
    restart: input.restart,
    ttl_seconds: ttlSeconds,
  };
  const row: ServiceRow = {
    id,
    tenant_id: tenantId,
    agent_id: agentId,
    policy_id: policy.id,
    policy_version: policy.version,
    status: 'starting',
    created_at: nowIso,
    started_at: null,
    stopped_at: null,
    proxy_url: hosting.proxyUrl(id),
    port: input.port,
    runner_id: runner.id,
    spec: JSON.stringify(seed),
    reason: null,
    sandbox_id: newId('sandbox', nowMs),
    expires_at: toRfc3339(nowMs + ttlSeconds * 1000),
    last_activity_at: nowIso,
    restarts: 0,
    zone: input.zone ?? null,
    public: input.public ? 1 : 0,
    log_tail: null,
  };
  await deps.store.transaction(async (tx) => {
    // Counted and inserted under the tenant's lock: two creates cannot both take the last place.
    await lockTenantForSubmission(tx, tenantId);
    if ((await countLiveServices(tx, tenantId)) >= maxRunning) {
      throw policyViolation(`the tenant has ${maxRunning} services starting or running, the ceiling (max_running); stop one first`, 'services.max_running', {
        ...pinned,
        ceiling: maxRunning,
      });
    }
    await tx.db.insertInto('services').values(row).execute();
    await tx.db
      .insertInto('sandbox_instances')
      .values({ id: row.sandbox_id!, kind: 'service', job_id: null, session_id: null, service_id: id, runner_id: runner.id, status: 'provisioning', created_at: nowIso, terminated_at: null })
      .execute();
    await auditSuccess(deps, tx, principal, {
      action: 'service.create',
      resource_type: 'service',
      resource_id: id,
      subject_agent_id: agentId,
      details: { ...pinned, runner_id: runner.id, port: input.port, ttl_seconds: ttlSeconds, restart: input.restart, public: input.public },
    });
  });
  try {
    await callRunnerJson(runner, 'POST', '/v1/services', {
      service_id: id,
      limits,
      env: seed.env,
      files: (input.files ?? []).map((f) => ({
        path: f.path,
        content: f.encoding === 'base64' ? f.content : Buffer.from(f.content, 'utf8').toString('base64'),
      })),
      language: input.language ?? null,
      code: input.code ?? null,
      command: input.command,
      port: input.port,
      readiness,
      restart: input.restart,
      max_run_ms: ttlSeconds * 1000 + RUN_MARGIN_MS,
      // The policy's egress rules: allowlist services reach their hosts through the runner's proxy.
      network: policy.ruleset.network,
    });
  } catch (err) {
    // No sandbox, no service: it ends at once (audited) and the caller gets the runner's refusal.
    await deps.store.transaction(async (tx) => {
      const t = deps.clock.nowMs();
      if (await moveService(tx, id, 'terminated', t, { reason: 'start_failed' })) {
        await markServiceSandbox(tx, row.sandbox_id!, 'failed', t);
        await auditSuccess(deps, tx, principal, {
          action: 'service.terminate',
          resource_type: 'service',
          resource_id: id,
          subject_agent_id: agentId,
          details: { reason: 'start_failed', error: (err as Error).message.slice(0, 500) },
        });
      }
    });
    throw err;
  }
  await deps.store.transaction((tx) => markServiceSandbox(tx, row.sandbox_id!, 'running', deps.clock.nowMs()));
  return serviceFromRow((await getService(deps.store, id))!, hosting);
}

export async function getTenantService(deps: JobDeps, hosting: ServiceHosting, principal: Principal, id: string): Promise<Service> {
  return serviceFromRow(await loadVisibleService(deps.store, principal, id), hosting);
}

export async function listTenantServices(deps: JobDeps, hosting: ServiceHosting, principal: Principal, query: TenantWorkListQuery) {
  const result = await listTenantWork(deps.store, principal, 'services', query);
  return { items: result.items.map((r) => serviceFromRow(r, hosting)), next_cursor: result.next_cursor };
}

/** `POST /v1/services/{id}/stop`: → stopped, sandbox destroyed. Idempotent on a stopped service. */
export async function stopService(deps: JobDeps, hosting: ServiceHosting, principal: Principal, id: string): Promise<Service> {
  const row = await loadVisibleService(deps.store, principal, id);
  if (row.status === 'terminated') {
    throw new KilnError('INVALID_TRANSITION', `service ${id} is terminated (${row.reason}); it cannot be stopped`, {
      extra: { entity: 'service', from: row.status, to: 'stopped' },
    });
  }
  const moved = await deps.store.transaction(async (tx) => {
    if (!(await moveService(tx, id, 'stopped', deps.clock.nowMs(), { reason: 'stopped' }))) return false;
    await auditSuccess(deps, tx, principal, {
      action: 'service.stop',
      resource_type: 'service',
      resource_id: id,
      subject_agent_id: row.agent_id,
      details: { reason: 'stopped' },
    });
    return true;
  });
  if (moved && row.runner_id) await destroyServiceSandbox(deps, row, await runnerEndpoint(deps.store, row.runner_id));
  return serviceFromRow((await getService(deps.store, id))!, hosting);
}

/**
 * Destroys a service's sandbox on its runner (best effort: the reconciler retries) and records it. The
 * end of its log is kept first, so `logs` still answers once the sandbox is gone.
 */
export async function destroyServiceSandbox(
  deps: JobDeps,
  service: { id: string; sandbox_id: string | null },
  runner: RunnerEndpoint,
): Promise<boolean> {
  const tail = await readLogTail(runner, service.id).catch(() => undefined);
  if (tail) await deps.store.db.updateTable('services').set({ log_tail: JSON.stringify(tail) }).where('id', '=', service.id).execute();
  return destroyPersistentSandbox(deps, 'service', service, runner, (id) => getService(deps.store, id));
}

/**
 * Ends services for a system reason (crash, readiness, ttl, runner lost…) in the caller's transaction,
 * one audit event each; the reconciler destroys whatever sandbox is still live.
 */
export async function endServicesFor(
  tx: TxHandle,
  rows: Pick<ServiceRow, 'id' | 'tenant_id' | 'agent_id' | 'sandbox_id'>[],
  reason: Exclude<ServiceEndReason, 'stopped'>,
  actorId: string,
  nowMs: number,
  details: Record<string, unknown> = {},
): Promise<number> {
  let ended = 0;
  for (const s of rows) {
    if (!(await moveService(tx, s.id, 'terminated', nowMs, { reason }))) continue;
    ended++;
    if (reason === 'runner_lost' && s.sandbox_id) await markServiceSandbox(tx, s.sandbox_id, 'failed', nowMs);
    await appendAuditEvent(
      tx,
      {
        tenant_id: s.tenant_id,
        actor_id: actorId,
        action: 'service.terminate',
        resource_type: 'service',
        resource_id: s.id,
        outcome: 'success',
        details: { actor_kind: 'system', reason, ...details },
        subject_agent_id: s.agent_id,
      },
      nowMs,
    );
  }
  return ended;
}
