import { toRfc3339 } from '@kiln/core';
import type { Selectable } from 'kysely';
import { serviceMachine, type ServiceState } from '../domain/machines.js';
import { sourcesOf } from '../domain/state-machine.js';
import type { ServicesTable, ServiceTokensTable } from './schema.js';
import type { DbHandle, TxHandle } from './store.js';

export type ServiceRow = Selectable<ServicesTable>;
export type ServiceTokenRow = Selectable<ServiceTokensTable>;

export async function getService(h: DbHandle, id: string): Promise<ServiceRow | undefined> {
  return h.db.selectFrom('services').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Services of a tenant that hold (or are getting) a sandbox: what `services.max_running` counts. */
export async function countLiveServices(h: DbHandle, tenantId: string): Promise<number> {
  const row = await h.db
    .selectFrom('services')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('status', 'in', ['starting', 'running'])
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Live services per runner, for placement. */
export async function liveServicesByRunner(h: DbHandle): Promise<Map<string, number>> {
  const rows = await h.db
    .selectFrom('services')
    .select(['runner_id', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('status', 'in', ['starting', 'running'])
    .where('runner_id', 'is not', null)
    .groupBy('runner_id')
    .execute();
  return new Map(rows.map((r) => [r.runner_id!, Number(r.n)]));
}

/**
 * Moves a service along its transition table (the source states are the table's), in the caller's
 * transaction. False when it was no longer in a state that may move there: the first move wins.
 */
export async function moveService(
  tx: TxHandle,
  id: string,
  to: ServiceState,
  nowMs: number,
  changes: { reason?: string; restarts?: number } = {},
): Promise<boolean> {
  const nowIso = toRfc3339(nowMs);
  const result = await tx.db
    .updateTable('services')
    .set({
      status: to,
      ...(to === 'running' ? { started_at: nowIso } : {}),
      ...(to === 'stopped' || to === 'terminated' ? { stopped_at: nowIso } : {}),
      ...(changes.reason !== undefined ? { reason: changes.reason } : {}),
      ...(changes.restarts !== undefined ? { restarts: changes.restarts } : {}),
    })
    .where('id', '=', id)
    .where('status', 'in', sourcesOf(serviceMachine, to))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export async function setServiceRestarts(h: DbHandle, id: string, restarts: number): Promise<void> {
  await h.db.updateTable('services').set({ restarts }).where('id', '=', id).where('restarts', '<', restarts).execute();
}

/** Services that hold a sandbox now (starting or running), oldest first, a page at a time. */
export async function liveServices(h: DbHandle, limit: number): Promise<ServiceRow[]> {
  return h.db.selectFrom('services').selectAll().where('status', 'in', ['starting', 'running']).orderBy('id').limit(limit).execute();
}

export async function liveServicesOf(tx: TxHandle, column: 'runner_id' | 'agent_id' | 'tenant_id', id: string): Promise<ServiceRow[]> {
  return tx.db.selectFrom('services').selectAll().where(column, '=', id).where('status', 'in', ['starting', 'running']).execute();
}

/** Ended services whose sandbox is still live on a runner: the reconciler destroys them. */
export async function endedServicesWithLiveSandbox(h: DbHandle, limit: number) {
  return h.db
    .selectFrom('sandbox_instances')
    .innerJoin('services', 'services.id', 'sandbox_instances.service_id')
    .innerJoin('runner_nodes', 'runner_nodes.id', 'sandbox_instances.runner_id')
    .select([
      'sandbox_instances.id as sandbox_id',
      'services.id as service_id',
      'runner_nodes.id as runner_id',
      'runner_nodes.address as address',
      'runner_nodes.signing_key as signing_key',
    ])
    .where('sandbox_instances.kind', '=', 'service')
    .where('sandbox_instances.status', 'in', ['provisioning', 'running'])
    .where('services.status', 'in', ['stopped', 'terminated'])
    .limit(limit)
    .execute();
}

/** Proxied traffic is activity: `last_activity_at` moves (the caller bounds how often). */
export async function touchService(h: DbHandle, id: string, nowMs: number): Promise<void> {
  await h.db.updateTable('services').set({ last_activity_at: toRfc3339(nowMs) }).where('id', '=', id).execute();
}

export async function insertServiceToken(tx: TxHandle, row: ServiceTokenRow): Promise<void> {
  await tx.db.insertInto('service_tokens').values(row).execute();
}

export async function findServiceToken(h: DbHandle, tokenHash: string): Promise<ServiceTokenRow | undefined> {
  return h.db.selectFrom('service_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
}

export async function getServiceToken(h: DbHandle, id: string): Promise<ServiceTokenRow | undefined> {
  return h.db.selectFrom('service_tokens').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Revokes a token; false when it was revoked already. */
export async function revokeServiceToken(tx: TxHandle, id: string, nowMs: number): Promise<boolean> {
  const result = await tx.db
    .updateTable('service_tokens')
    .set({ revoked_at: toRfc3339(nowMs) })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Live tokens of an owner: a service or session may hold a bounded number at once. */
export async function countLiveTokens(h: DbHandle, ownerId: string, nowMs: number): Promise<number> {
  const row = await h.db
    .selectFrom('service_tokens')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('owner_id', '=', ownerId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', toRfc3339(nowMs))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
