import {
  KilnError,
  newId,
  toRfc3339,
  type CreateSessionRequest,
  type Limits,
  type Session,
  type SessionEndReason,
} from '@kiln/core';
import { limitCeilings } from '../../domain/quota.js';
import { listRunners } from '../../store/fleet.js';
import { lockTenantForSubmission } from '../../store/quotas.js';
import {
  activeSessionsByRunner,
  countActiveSessions,
  endSession,
  getSession,
  markSessionSandbox,
  touchSession,
  type SessionRow,
} from '../../store/sessions.js';
import type { DbHandle, TxHandle } from '../../store/store.js';
import { appendAuditEvent } from '../../store/audit.js';
import { notFound, requireTenantActive, requireTenantMember } from '../access.js';
import { auditSuccess } from '../audit.js';
import { destroyPersistentSandbox } from '../egress-audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { resolveAgent, resolvePolicy, visibleToAgent } from '../jobs.js';
import { effectiveQuota } from '../quotas.js';
import { listTenantWork, type TenantWorkListQuery } from '../tenant-lists.js';
import { callRunnerJson, type RunnerEndpoint } from './runner-link.js';

/** Sessions a runner holds per job slot of its capacity: sessions are mostly idle between steps. */
export const SESSIONS_PER_CAPACITY_SLOT = 16;
/** What a caller is told to wait when no runner has room for a session. */
const NO_ROOM_RETRY_AFTER_SECONDS = 5;

export function sessionFromRow(row: SessionRow): Session {
  const seed = row.seed ? (JSON.parse(row.seed) as { env?: Record<string, string>; files?: string[] }) : {};
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    agent_id: row.agent_id,
    policy_id: row.policy_id,
    policy_version: row.policy_version,
    status: row.status as Session['status'],
    reason: (row.reason as SessionEndReason | null) ?? null,
    ttl_seconds: row.ttl_seconds,
    idle_timeout_seconds: row.idle_timeout_seconds ?? 0,
    zone: row.zone,
    env: seed.env ?? {},
    metadata: row.metadata ? (JSON.parse(row.metadata) as Record<string, string>) : {},
    files: seed.files ?? [],
    runner_id: row.runner_id,
    sandbox_id: row.sandbox_id,
    created_at: row.created_at,
    expires_at: row.expires_at,
    last_activity_at: row.last_activity_at,
    ended_at: row.ended_at,
    last_step_sequence: row.last_step_sequence,
  };
}

/** A session the caller may see: its tenant's for a tenant admin, its own for an agent; else 404. */
export async function loadVisibleSession(h: DbHandle, principal: Principal, id: string): Promise<SessionRow> {
  const tenantId = requireTenantMember(principal);
  const row = await getSession(h, id);
  if (!row || row.tenant_id !== tenantId || !visibleToAgent(principal, row.agent_id)) throw notFound('session', id);
  return row;
}

/** The session, active, with the runner endpoint that holds its sandbox. */
export async function activeSessionEndpoint(deps: JobDeps, principal: Principal, id: string) {
  const row = await loadVisibleSession(deps.store, principal, id);
  if (row.status !== 'active') {
    throw new KilnError('INVALID_TRANSITION', `session ${id} is ${row.status} (${row.reason}); create a new one`, {
      extra: { entity: 'session', from: row.status },
    });
  }
  const runner = await runnerEndpoint(deps.store, row.runner_id!);
  return { row, runner };
}

export async function runnerEndpoint(h: DbHandle, runnerId: string): Promise<RunnerEndpoint> {
  const runner = await h.db
    .selectFrom('runner_nodes')
    .select(['id', 'address', 'signing_key'])
    .where('id', '=', runnerId)
    .executeTakeFirst();
  if (!runner) throw new KilnError('UNAVAILABLE', `runner ${runnerId} is gone`);
  return runner;
}

/** Runners a create tries at most: each refusal (no memory left there) costs one round trip. */
const PLACEMENT_TRIES_MAX = 8;

function noRoomError(zone: string | undefined, why?: string): KilnError {
  // The fleet is full (or empty) for now: like a full queue, the caller is told when to retry.
  const where = zone ? ` in zone ${zone}` : '';
  return new KilnError(
    'RATE_LIMITED',
    `no healthy runner${where} has room for this session${why ? ` (${why})` : ''}; retry later${zone ? ', pick another zone' : ''} or ask for less memory`,
    { ...(zone ? { field: 'body.zone' } : {}), extra: { retry_after: NO_ROOM_RETRY_AFTER_SECONDS, reason: 'no_session_capacity' } },
  );
}

/**
 * Healthy runners in the zone with a session endpoint and a free session place, least loaded first. Each
 * runner also accounts the memory of its sandboxes (sessions and jobs) against its budget and refuses a
 * session it cannot hold; the create then tries the next one.
 */
async function placementCandidates(deps: JobDeps, zone: string | undefined) {
  const runners = (await listRunners(deps.store, { limit: 1000 })).filter(
    (r) => r.status === 'healthy' && r.draining === 0 && r.address !== null && r.signing_key !== null && (!zone || r.zone === zone),
  );
  const load = await activeSessionsByRunner(deps.store);
  const withRoom = runners
    .map((r) => ({ runner: r, load: (load.get(r.id) ?? 0) / (r.capacity * SESSIONS_PER_CAPACITY_SLOT) }))
    .filter((c) => c.load < 1)
    .sort((a, b) => a.load - b.load)
    .slice(0, PLACEMENT_TRIES_MAX)
    .map((c) => c.runner);
  if (withRoom.length === 0) throw noRoomError(zone);
  return withRoom;
}

function isCapacityRefusal(err: unknown): err is KilnError {
  return err instanceof KilnError && err.code === 'CONFLICT' && err.extra?.runner_reason === 'no_session_capacity';
}

/**
 * Creates a session (issue 8, point 1): checked against the policy's sessions rules, placed on a healthy
 * runner with room in the zone asked for, and answered once the runner's persistent sandbox is ready.
 */
export async function createSession(deps: JobDeps, principal: Principal, input: CreateSessionRequest): Promise<Session> {
  const tenantId = requireTenantMember(principal);
  requireTenantActive(principal);
  const agentId = await resolveAgent(deps, principal, tenantId, input.agent_id);
  const policy = await resolvePolicy(deps, tenantId, input.policy_id);
  const quota = await effectiveQuota(deps, deps.store, tenantId);
  const rules = policy.ruleset.sessions;
  const maxTtl = Math.min(rules.max_ttl_seconds, quota.sessions.max_ttl_seconds);
  const maxActive = Math.min(rules.max_active, quota.sessions.max_active);
  const ttlSeconds = input.ttl_seconds ?? maxTtl;
  if (ttlSeconds > maxTtl) {
    throw new KilnError('POLICY_VIOLATION', `ttl_seconds ${ttlSeconds} is above the ceiling ${maxTtl} (policy ${policy.name} v${policy.version})`, {
      field: 'body.ttl_seconds',
      extra: { ceiling: maxTtl, requested: ttlSeconds, policy_id: policy.id, policy_version: policy.version },
    });
  }
  const limits: Limits = limitCeilings(policy.ruleset.limits, quota);
  const candidates = await placementCandidates(deps, input.zone);
  let runner = candidates[0]!;
  const nowMs = deps.clock.nowMs();
  const nowIso = toRfc3339(nowMs);
  const row: SessionRow = {
    id: newId('session', nowMs),
    tenant_id: tenantId,
    agent_id: agentId,
    policy_id: policy.id,
    policy_version: policy.version,
    status: 'active',
    ttl_seconds: ttlSeconds,
    created_at: nowIso,
    expires_at: toRfc3339(nowMs + ttlSeconds * 1000),
    last_activity_at: nowIso,
    last_step_sequence: 0,
    runner_id: runner.id,
    language: null,
    ended_at: null,
    zone: input.zone ?? null,
    metadata: JSON.stringify(input.metadata ?? {}),
    seed: JSON.stringify({ env: input.env ?? {}, files: (input.files ?? []).map((f) => f.path), artifacts: policy.ruleset.artifacts }),
    sandbox_id: newId('sandbox', nowMs),
    reason: null,
    idle_timeout_seconds: rules.idle_timeout_seconds,
  };
  await deps.store.transaction(async (tx) => {
    // Counted and inserted under the tenant's lock: two creates cannot both take the last place.
    await lockTenantForSubmission(tx, tenantId);
    if ((await countActiveSessions(tx, tenantId)) >= maxActive) {
      throw new KilnError('POLICY_VIOLATION', `the tenant has ${maxActive} active sessions, the ceiling (max_active); end one first`, {
        field: 'sessions.max_active',
        extra: { ceiling: maxActive, policy_id: policy.id, policy_version: policy.version },
      });
    }
    await tx.db.insertInto('sessions').values(row).execute();
    await tx.db
      .insertInto('sandbox_instances')
      .values({
        id: row.sandbox_id!,
        kind: 'session',
        job_id: null,
        session_id: row.id,
        service_id: null,
        runner_id: runner.id,
        status: 'provisioning',
        created_at: nowIso,
        terminated_at: null,
      })
      .execute();
    await auditSuccess(deps, tx, principal, {
      action: 'session.create',
      resource_type: 'session',
      resource_id: row.id,
      subject_agent_id: agentId,
      details: { policy_id: policy.id, policy_version: policy.version, runner_id: runner.id, ttl_seconds: ttlSeconds, zone: row.zone },
    });
  });
  const startBody = {
    session_id: row.id,
    limits,
    // The policy's egress rules: allowlist sessions reach their hosts through the runner's proxy.
    network: policy.ruleset.network,
    env: input.env ?? {},
    files: (input.files ?? []).map((f) => ({
      path: f.path,
      content: f.encoding === 'base64' ? f.content : Buffer.from(f.content, 'utf8').toString('base64'),
    })),
  };
  try {
    for (let i = 0; ; i++) {
      try {
        await callRunnerJson(runner, 'POST', '/v1/sessions', startBody);
        break;
      } catch (err) {
        const next = candidates[i + 1];
        if (!isCapacityRefusal(err)) throw err;
        if (!next) throw noRoomError(input.zone, `runner ${runner.name}: ${err.message}`);
        // That runner's memory budget is taken (jobs and other sessions): the session moves to the next.
        const from = runner;
        runner = next;
        await deps.store.transaction(async (tx) => {
          await tx.db.updateTable('sessions').set({ runner_id: next.id }).where('id', '=', row.id).execute();
          await tx.db.updateTable('sandbox_instances').set({ runner_id: next.id }).where('id', '=', row.sandbox_id!).execute();
          await auditSuccess(deps, tx, principal, {
            action: 'session.place',
            resource_type: 'session',
            resource_id: row.id,
            subject_agent_id: agentId,
            details: { from_runner_id: from.id, runner_id: next.id, reason: 'no_session_capacity', detail: err.message.slice(0, 300) },
          });
        });
      }
    }
  } catch (err) {
    // No sandbox, no session: it ends at once (audited) and the caller gets the runner's refusal.
    await deps.store.transaction(async (tx) => {
      if (await endSession(tx, row.id, 'terminated', 'runner_lost', deps.clock.nowMs())) {
        await markSessionSandbox(tx, row.sandbox_id!, 'failed', deps.clock.nowMs());
        await auditSuccess(deps, tx, principal, {
          action: 'session.terminate',
          resource_type: 'session',
          resource_id: row.id,
          subject_agent_id: agentId,
          details: { reason: 'runner_lost', error: (err as Error).message.slice(0, 500) },
        });
      }
    });
    throw err;
  }
  await deps.store.transaction((tx) => markSessionSandbox(tx, row.sandbox_id!, 'running', deps.clock.nowMs()));
  return sessionFromRow((await getSession(deps.store, row.id))!);
}

export async function getTenantSession(deps: JobDeps, principal: Principal, id: string): Promise<Session> {
  return sessionFromRow(await loadVisibleSession(deps.store, principal, id));
}

export async function listTenantSessions(deps: JobDeps, principal: Principal, query: TenantWorkListQuery) {
  const result = await listTenantWork(deps.store, principal, 'sessions', query);
  return { items: result.items.map(sessionFromRow), next_cursor: result.next_cursor };
}

/** Destroys a session's sandbox on its runner (best effort: the reaper retries) and records it. */
export async function destroySessionSandbox(
  deps: JobDeps,
  session: { id: string; sandbox_id: string | null },
  runner: RunnerEndpoint,
): Promise<boolean> {
  return destroyPersistentSandbox(deps, 'session', session, runner, (id) => getSession(deps.store, id));
}

/** `DELETE /v1/sessions/{id}`: → terminated (deleted), sandbox destroyed. Idempotent. */
export async function deleteSession(deps: JobDeps, principal: Principal, id: string): Promise<Session> {
  const row = await loadVisibleSession(deps.store, principal, id);
  const ended = await deps.store.transaction(async (tx) => {
    if (!(await endSession(tx, id, 'terminated', 'deleted', deps.clock.nowMs()))) return false;
    await auditSuccess(deps, tx, principal, {
      action: 'session.terminate',
      resource_type: 'session',
      resource_id: id,
      subject_agent_id: row.agent_id,
      details: { reason: 'deleted' },
    });
    return true;
  });
  if (ended && row.runner_id) await destroySessionSandbox(deps, row, await runnerEndpoint(deps.store, row.runner_id));
  return sessionFromRow((await getSession(deps.store, id))!);
}

/** E2B's setTimeout: `expires_at` moves to now + ttl, never past the policy's maximum from now. */
export async function keepaliveSession(deps: JobDeps, principal: Principal, id: string, ttlSeconds?: number): Promise<Session> {
  const row = await loadVisibleSession(deps.store, principal, id);
  if (row.status !== 'active') {
    throw new KilnError('INVALID_TRANSITION', `session ${id} is ${row.status}; it cannot be kept alive`, {
      extra: { entity: 'session', from: row.status },
    });
  }
  const policy = await resolvePolicy(deps, row.tenant_id, row.policy_id);
  const quota = await effectiveQuota(deps, deps.store, row.tenant_id);
  const maxTtl = Math.min(policy.ruleset.sessions.max_ttl_seconds, quota.sessions.max_ttl_seconds);
  const ttl = ttlSeconds ?? row.ttl_seconds;
  if (ttl > maxTtl) {
    throw new KilnError('POLICY_VIOLATION', `ttl_seconds ${ttl} is above the ceiling ${maxTtl}`, {
      field: 'body.ttl_seconds',
      extra: { ceiling: maxTtl, requested: ttl },
    });
  }
  const nowMs = deps.clock.nowMs();
  await deps.store.transaction(async (tx) => {
    await touchSession(tx, id, nowMs, toRfc3339(nowMs + ttl * 1000));
    await auditSuccess(deps, tx, principal, {
      action: 'session.keepalive',
      resource_type: 'session',
      resource_id: id,
      subject_agent_id: row.agent_id,
      details: { ttl_seconds: ttl },
    });
  });
  return sessionFromRow((await getSession(deps.store, id))!);
}

/**
 * Ends sessions in bulk for a system reason (runner lost, tenant suspended, agent disabled), in the
 * caller's transaction, one audit event each; the reaper destroys whatever sandbox is still live.
 */
export async function endSessionsFor(
  tx: TxHandle,
  rows: SessionRow[],
  reason: SessionEndReason,
  actorId: string,
  nowMs: number,
): Promise<number> {
  let ended = 0;
  for (const s of rows) {
    const to = reason === 'ttl' || reason === 'idle' ? 'expired' : 'terminated';
    if (!(await endSession(tx, s.id, to, reason, nowMs))) continue;
    ended++;
    if (reason === 'runner_lost' && s.sandbox_id) await markSessionSandbox(tx, s.sandbox_id, 'failed', nowMs);
    await appendAuditEvent(
      tx,
      {
        tenant_id: s.tenant_id,
        actor_id: actorId,
        action: to === 'expired' ? 'session.expire' : 'session.terminate',
        resource_type: 'session',
        resource_id: s.id,
        outcome: 'success',
        details: { actor_kind: 'system', reason },
        subject_agent_id: s.agent_id,
      },
      nowMs,
    );
  }
  return ended;
}
