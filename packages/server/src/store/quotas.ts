import type { TenantQuotaOverrides } from '@kiln/core';
import type { DbHandle, TxHandle } from './store.js';
import { precompiled } from './precompiled.js';

export interface QuotaOverridesRecord {
  overrides: TenantQuotaOverrides;
  updated_at: string;
}

export async function findQuotaOverrides(h: DbHandle, tenantId: string): Promise<QuotaOverridesRecord | undefined> {
  const row = await h.db
    .selectFrom('tenant_quotas')
    .select(['overrides', 'updated_at'])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row && { overrides: JSON.parse(row.overrides) as TenantQuotaOverrides, updated_at: row.updated_at };
}

/** Replaces a tenant's overrides (inserting the row on the first call). */
export async function saveQuotaOverrides(
  tx: TxHandle,
  args: { tenantId: string; overrides: TenantQuotaOverrides; nowIso: string; updatedBy: string },
): Promise<void> {
  const values = { overrides: JSON.stringify(args.overrides), updated_at: args.nowIso, updated_by: args.updatedBy };
  await tx.db
    .insertInto('tenant_quotas')
    .values({ tenant_id: args.tenantId, ...values })
    .onConflict((oc) => oc.column('tenant_id').doUpdateSet(values))
    .execute();
}

/**
 * Serialises a tenant's submissions until the transaction ends, so "count queued, then insert" cannot let
 * two concurrent submitters both pass the cap. PostgreSQL: a row lock on the tenant (NO KEY UPDATE, so
 * inserts that only reference the tenant are not blocked). SQLite has a single writer already.
 */
export async function lockTenantForSubmission(tx: TxHandle, tenantId: string): Promise<void> {
  if (tx.dialect !== 'postgres') return;
  await tx.db.selectFrom('tenants').select('id').where('id', '=', tenantId).forNoKeyUpdate().execute();
}

/**
 * The tenant's and agent's status as a submission sees them under its locks (the agent row share-locked
 * on PostgreSQL, so a concurrent disable waits for the insert and then cancels it).
 */
export async function ownerStatusForSubmission(
  tx: TxHandle,
  tenantId: string,
  agentId: string | null,
): Promise<{ tenant: string | undefined; agent: string | undefined }> {
  if (tx.dialect === 'sqlite' && agentId !== null) {
    // One statement: SQLite's single writer already holds off a concurrent disable.
    const [row] = (await ownerStatuses(tx, tenantId, agentId)).rows;
    return { tenant: row?.tenant ?? undefined, agent: row?.agent ?? undefined };
  }
  const tenant = await tx.db.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirst();
  if (agentId === null) return { tenant: tenant?.status, agent: undefined };
  let query = tx.db.selectFrom('agents').select('status').where('id', '=', agentId);
  if (tx.dialect === 'postgres') query = query.forShare();
  const agent = await query.executeTakeFirst();
  return { tenant: tenant?.status, agent: agent?.status };
}

const ownerStatuses = precompiled<[tenantId: string, agentId: string], { tenant: string | null; agent: string | null }>(
  (db, tenantId, agentId) =>
    db.selectNoFrom((eb) => [
      eb.selectFrom('tenants').select('status').where('id', '=', tenantId).as('tenant'),
      eb.selectFrom('agents').select('status').where('id', '=', agentId).as('agent'),
    ]),
  2,
);

const queuedUpTo = precompiled<[tenantId: string, upTo: number], { n: number | string }>(
  (db, tenantId, upTo) =>
    db
      .selectFrom((eb) => eb.selectFrom('jobs').select('id').where('tenant_id', '=', tenantId).where('status', '=', 'queued').limit(upTo).as('q'))
      .select((eb) => eb.fn.countAll<number | string>().as('n')),
  2,
);

/** The tenant's queued jobs, counted up to `upTo` (the cap): the cost stays flat however long the queue. */
export async function countQueuedJobs(h: DbHandle, tenantId: string, upTo: number): Promise<number> {
  const [row] = (await queuedUpTo(h, tenantId, upTo)).rows;
  return Number(row?.n ?? 0);
}
