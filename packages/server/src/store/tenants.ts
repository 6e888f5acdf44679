import type { Tenant } from '@kiln/core';
import { decodeCursor, page } from './pagination.js';
import { tenantFromRow } from './rows.js';
import type { DbHandle } from './store.js';

export async function insertTenant(h: DbHandle, tenant: Tenant): Promise<void> {
  await h.db.insertInto('tenants').values(tenant).execute();
}

export async function findTenant(h: DbHandle, id: string): Promise<Tenant | undefined> {
  const row = await h.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  return row && tenantFromRow(row);
}

export async function listTenants(h: DbHandle, opts: { limit: number; cursor?: string | undefined }) {
  const after = decodeCursor(opts.cursor);
  let q = h.db.selectFrom('tenants').selectAll().orderBy('id').limit(opts.limit + 1);
  if (after) q = q.where('id', '>', after);
  return page((await q.execute()).map(tenantFromRow), opts.limit);
}

/**
 * Moves a tenant from `from` to `to` only if it is still in `from` (a conditional write, so two racing
 * changes cannot both win). Returns false when the tenant was not in `from`.
 */
export async function setTenantStatus(h: DbHandle, id: string, from: string, to: string): Promise<boolean> {
  const result = await h.db
    .updateTable('tenants')
    .set({ status: to })
    .where('id', '=', id)
    .where('status', '=', from)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
