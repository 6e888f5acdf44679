import { toRfc3339 } from '@kiln/core';
import type { Selectable } from 'kysely';
import { sessionMachine } from '../domain/machines.js';
import { sourcesOf } from '../domain/state-machine.js';
import type { SessionsTable } from './schema.js';
import type { DbHandle, TxHandle } from './store.js';

export type SessionRow = Selectable<SessionsTable>;

export async function getSession(h: DbHandle, id: string): Promise<SessionRow | undefined> {
  return h.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The session row locked for the caller's transaction (PostgreSQL; SQLite has one writer). */
export async function lockSession(tx: TxHandle, id: string): Promise<SessionRow | undefined> {
  let q = tx.db.selectFrom('sessions').selectAll().where('id', '=', id);
  if (tx.dialect === 'postgres') q = q.forUpdate();
  return q.executeTakeFirst();
}

export async function countActiveSessions(h: DbHandle, tenantId: string): Promise<number> {
  const row = await h.db
    .selectFrom('sessions')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'active')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Active sessions per runner, for placement. */
export async function activeSessionsByRunner(h: DbHandle): Promise<Map<string, number>> {
  const rows = await h.db
    .selectFrom('sessions')
    .select(['runner_id', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('status', '=', 'active')
    .where('runner_id', 'is not', null)
    .groupBy('runner_id')
    .execute();
  return new Map(rows.map((r) => [r.runner_id!, Number(r.n)]));
}

/**
 * Ends an active session (→ expired or terminated, with why), in the caller's transaction. False when it
 * had already ended: the first end wins, so ending is idempotent.
 */
export async function endSession(
  tx: TxHandle,
  id: string,
  to: 'expired' | 'terminated',
  reason: string,
  nowMs: number,
): Promise<boolean> {
  const result = await tx.db
    .updateTable('sessions')
    .set({ status: to, reason, ended_at: toRfc3339(nowMs) })
    .where('id', '=', id)
    .where('status', 'in', sourcesOf(sessionMachine, to))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Active sessions whose TTL passed or that were idle too long, oldest first. */
export async function sessionsDue(h: DbHandle, nowMs: number, limit: number): Promise<SessionRow[]> {
  const nowIso = toRfc3339(nowMs);
  const rows = await h.db
    .selectFrom('sessions')
    .selectAll()
    .where('status', '=', 'active')
    .orderBy('expires_at')
    .limit(limit * 4)
    .execute();
  // Idle is per session (its pinned timeout), so it is decided here rather than in SQL on text times.
  return rows.filter((r) => r.expires_at <= nowIso || idleSince(r, nowMs)).slice(0, limit);
}

export function idleSince(row: SessionRow, nowMs: number): boolean {
  return row.idle_timeout_seconds !== null && Date.parse(row.last_activity_at) + row.idle_timeout_seconds * 1000 <= nowMs;
}

/** Ended sessions whose sandbox is still live on a runner: the reaper destroys them. */
export async function endedSessionsWithLiveSandbox(h: DbHandle, limit: number) {
  return h.db
    .selectFrom('sandbox_instances')
    .innerJoin('sessions', 'sessions.id', 'sandbox_instances.session_id')
    .innerJoin('runner_nodes', 'runner_nodes.id', 'sandbox_instances.runner_id')
    .select([
      'sandbox_instances.id as sandbox_id',
      'sessions.id as session_id',
      'runner_nodes.id as runner_id',
      'runner_nodes.address as address',
      'runner_nodes.signing_key as signing_key',
    ])
    .where('sandbox_instances.kind', '=', 'session')
    .where('sandbox_instances.status', 'in', ['provisioning', 'running'])
    .where('sessions.status', '!=', 'active')
    .limit(limit)
    .execute();
}

export async function markSessionSandbox(tx: TxHandle, sandboxRowId: string, status: 'running' | 'terminated' | 'failed', nowMs: number) {
  await tx.db
    .updateTable('sandbox_instances')
    .set({ status, ...(status === 'running' ? {} : { terminated_at: toRfc3339(nowMs) }) })
    .where('id', '=', sandboxRowId)
    .where('status', 'in', status === 'running' ? ['provisioning'] : ['provisioning', 'running'])
    .execute();
}

/** Moves `last_activity_at` (every step, file call, keepalive). */
export async function touchSession(h: DbHandle, id: string, nowMs: number, expiresAt?: string): Promise<void> {
  await h.db
    .updateTable('sessions')
    .set({ last_activity_at: toRfc3339(nowMs), ...(expiresAt ? { expires_at: expiresAt } : {}) })
    .where('id', '=', id)
    .where('status', '=', 'active')
    .execute();
}

/** Active sessions of a runner (it is gone): their ids and owners, for the audit. */
export async function activeSessionsOfRunner(tx: TxHandle, runnerId: string): Promise<SessionRow[]> {
  return tx.db.selectFrom('sessions').selectAll().where('runner_id', '=', runnerId).where('status', '=', 'active').execute();
}

export async function activeSessionsOfAgent(tx: TxHandle, agentId: string): Promise<SessionRow[]> {
  return tx.db.selectFrom('sessions').selectAll().where('agent_id', '=', agentId).where('status', '=', 'active').execute();
}
