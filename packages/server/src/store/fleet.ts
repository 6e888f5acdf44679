import { newId, toRfc3339, type RegisterRunnerRequest, type RunnerNode, type SandboxInstance } from '@kiln/core';
import type { Selectable } from 'kysely';
import { runnerNodeMachine, sandboxInstanceMachine } from '../domain/machines.js';
import { assertTransition, sourcesOf, type StateMachine } from '../domain/state-machine.js';
import type { RunnerNodesTable, SandboxInstancesTable } from './schema.js';
import type { DbHandle, TxHandle } from './store.js';
import { precompiled } from './precompiled.js';

export type RunnerRow = Selectable<RunnerNodesTable>;
export type SandboxRow = Selectable<SandboxInstancesTable>;

export function runnerFromRow(row: RunnerRow): RunnerNode {
  return {
    id: row.id,
    name: row.name,
    status: row.status as RunnerNode['status'],
    zone: row.zone ?? 'default',
    capacity: row.capacity,
    address: row.address,
    labels: JSON.parse(row.labels) as Record<string, string>,
    languages: JSON.parse(row.languages) as RunnerNode['languages'],
    draining: row.draining === 1,
    last_heartbeat_at: row.last_heartbeat_at,
    created_at: row.created_at,
  };
}

export function sandboxFromRow(row: SandboxRow): SandboxInstance {
  return {
    id: row.id,
    kind: row.kind as SandboxInstance['kind'],
    job_id: row.job_id,
    session_id: row.session_id,
    service_id: row.service_id,
    runner_id: row.runner_id,
    status: row.status as SandboxInstance['status'],
    created_at: row.created_at,
    terminated_at: row.terminated_at,
  };
}

const runnerById = precompiled<[id: string], RunnerRow>((db, id) => db.selectFrom('runner_nodes').selectAll().where('id', '=', id), 1);

export async function getRunner(h: DbHandle, id: string): Promise<RunnerRow | undefined> {
  return (await runnerById(h, id)).rows[0];
}

/**
 * Registers a runner by name: a new node gets a new id; a known name (the same node after a restart)
 * keeps its id, comes back `healthy`, and takes its new description. Returns whether it was known.
 * `admit` sees the known row (locked) first and may refuse the registration by throwing.
 */
export async function upsertRunner(
  tx: TxHandle,
  req: RegisterRunnerRequest,
  nowMs: number,
  admit: (existing: RunnerRow | undefined) => void = () => {},
): Promise<{ runner: RunnerRow; restarted: boolean }> {
  const nowIso = toRfc3339(nowMs);
  const values = {
    zone: req.zone,
    capacity: req.capacity,
    address: req.address,
    labels: JSON.stringify(req.labels),
    languages: JSON.stringify(req.languages),
    last_heartbeat_at: nowIso,
  };
  let query = tx.db.selectFrom('runner_nodes').selectAll().where('name', '=', req.name);
  if (tx.dialect === 'postgres') query = query.forUpdate();
  const existing = await query.executeTakeFirst();
  admit(existing);
  if (existing) {
    if (existing.status !== 'healthy') assertTransition(runnerNodeMachine, existing.status as never, 'healthy', existing.id);
    await tx.db.updateTable('runner_nodes').set({ ...values, status: 'healthy' }).where('id', '=', existing.id).execute();
    return { runner: { ...existing, ...values, status: 'healthy' }, restarted: true };
  }
  const runner: RunnerRow = {
    id: newId('runner', nowMs),
    name: req.name,
    status: runnerNodeMachine.initial,
    created_at: nowIso,
    draining: 0,
    credential_hash: null,
    pool_stats: null,
    signing_key: null,
    ...values,
  };
  await tx.db.insertInto('runner_nodes').values(runner).execute();
  return { runner, restarted: false };
}

/** Records a heartbeat: the node is healthy again if it was degraded or offline. */
export async function touchRunner(tx: TxHandle, runner: RunnerRow, nowMs: number, poolStats?: unknown): Promise<RunnerRow> {
  if (runner.status !== 'healthy') assertTransition(runnerNodeMachine, runner.status as never, 'healthy', runner.id);
  const last_heartbeat_at = toRfc3339(nowMs);
  // The warm pool's counts ride on the same update: no statement more per beat.
  const pool = poolStats === undefined ? {} : { pool_stats: JSON.stringify(poolStats) };
  await tx.db.updateTable('runner_nodes').set({ status: 'healthy', last_heartbeat_at, ...pool }).where('id', '=', runner.id).execute();
  return { ...runner, status: 'healthy', last_heartbeat_at, ...pool };
}

/** Stores the hash of a runner's credential, or null to revoke it. */
/** Sets (or, with nulls, revokes) the runner's credential and the signing key derived from it. */
export async function setRunnerCredential(
  tx: TxHandle,
  id: string,
  credentialHash: string | null,
  signingKey: string | null = null,
): Promise<void> {
  await tx.db
    .updateTable('runner_nodes')
    .set({ credential_hash: credentialHash, signing_key: signingKey })
    .where('id', '=', id)
    .execute();
}

export async function setRunnerDraining(tx: TxHandle, id: string, draining: boolean): Promise<void> {
  await tx.db.updateTable('runner_nodes').set({ draining: draining ? 1 : 0 }).where('id', '=', id).execute();
}

/**
 * Moves runners by heartbeat age: healthy → degraded after one missed window, → offline after several.
 * Returns the runners that just went offline (their work must be recovered in the same transaction).
 */
export async function sweepRunnerLiveness(
  tx: TxHandle,
  args: { nowMs: number; degradedAfterMs: number; offlineAfterMs: number },
): Promise<{ offline: RunnerRow[]; degraded: { id: string; name: string }[] }> {
  const degradedBefore = toRfc3339(args.nowMs - args.degradedAfterMs);
  const offlineBefore = toRfc3339(args.nowMs - args.offlineAfterMs);
  const going = tx.db
    .selectFrom('runner_nodes')
    .selectAll()
    .where('status', 'in', sourcesOf(runnerNodeMachine as StateMachine<string>, 'offline'))
    .where('last_heartbeat_at', '<', offlineBefore);
  // Replicas sweep at once: a runner another sweep is taking offline is its to recover, not ours too.
  const offline = await (tx.dialect === 'postgres' ? going.forUpdate().skipLocked() : going).execute();
  if (offline.length > 0) {
    await tx.db.updateTable('runner_nodes').set({ status: 'offline' }).where('id', 'in', offline.map((r) => r.id)).execute();
  }
  const degraded = await tx.db
    .updateTable('runner_nodes')
    .set({ status: 'degraded' })
    .where('status', '=', 'healthy')
    .where('last_heartbeat_at', '<', degradedBefore)
    .returning(['id', 'name'])
    .execute();
  return { offline, degraded };
}

/** Every live sandbox instance of a runner becomes `failed` (the node is gone or restarted). */
export async function failRunnerSandboxes(tx: TxHandle, runnerId: string, nowMs: number): Promise<number> {
  const result = await tx.db
    .updateTable('sandbox_instances')
    .set({ status: 'failed', terminated_at: toRfc3339(nowMs) })
    .where('runner_id', '=', runnerId)
    .where('status', 'in', sourcesOf(sandboxInstanceMachine as StateMachine<string>, 'failed'))
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function markSandboxRunning(tx: TxHandle, sandboxId: string): Promise<void> {
  await tx.db
    .updateTable('sandbox_instances')
    .set({ status: 'running' })
    .where('id', '=', sandboxId)
    .where('status', '=', 'provisioning')
    .execute();
}

export async function listRunners(h: DbHandle, args: { after?: string; limit: number }): Promise<RunnerRow[]> {
  let query = h.db.selectFrom('runner_nodes').selectAll().orderBy('id').limit(args.limit + 1);
  if (args.after) query = query.where('id', '>', args.after);
  return query.execute();
}

export async function listSandboxes(
  h: DbHandle,
  args: { after?: string; limit: number; job_id?: string; session_id?: string; runner_id?: string; status?: string },
): Promise<SandboxRow[]> {
  let query = h.db.selectFrom('sandbox_instances').selectAll().orderBy('id').limit(args.limit + 1);
  if (args.after) query = query.where('id', '>', args.after);
  if (args.job_id) query = query.where('job_id', '=', args.job_id);
  if (args.session_id) query = query.where('session_id', '=', args.session_id);
  if (args.runner_id) query = query.where('runner_id', '=', args.runner_id);
  if (args.status) query = query.where('status', '=', args.status);
  return query.execute();
}
