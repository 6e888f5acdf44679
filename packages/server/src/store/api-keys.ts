import type { ApiKey } from '@kiln/core';
import type { Selectable } from 'kysely';
import { decodeCursor, page } from './pagination.js';
import { apiKeyFromRow } from './rows.js';
import type { ApiKeysTable } from './schema.js';
import type { DbHandle } from './store.js';

export type ApiKeyRow = Selectable<ApiKeysTable>;

export async function insertApiKey(h: DbHandle, row: ApiKeyRow): Promise<ApiKey> {
  await h.db.insertInto('api_keys').values(row).execute();
  return apiKeyFromRow(row);
}

export async function findApiKey(h: DbHandle, id: string): Promise<ApiKeyRow | undefined> {
  return h.db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Marks a key revoked (once); false when it was already revoked or does not exist. */
export async function revokeApiKey(h: DbHandle, id: string, revokedAt: string): Promise<boolean> {
  const result = await h.db
    .updateTable('api_keys')
    .set({ revoked_at: revokedAt })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Keys by id (oldest first), of one tenant or agent, or all; never their hashes. */
export async function listApiKeys(
  h: DbHandle,
  opts: { limit: number; cursor?: string | undefined; tenantId?: string | undefined; agentId?: string | undefined },
) {
  const after = decodeCursor(opts.cursor);
  let q = h.db.selectFrom('api_keys').selectAll().orderBy('id').limit(opts.limit + 1);
  if (opts.tenantId !== undefined) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.agentId !== undefined) q = q.where('agent_id', '=', opts.agentId);
  if (after) q = q.where('id', '>', after);
  return page((await q.execute()).map(apiKeyFromRow), opts.limit);
}

/**
 * Records that a key was used, unless it was recorded within `resolutionMs`: one conditional UPDATE
 * that matches no row on most requests of a busy key.
 */
export async function touchApiKey(h: DbHandle, id: string, nowIso: string, cutoffIso: string): Promise<void> {
  await h.db
    .updateTable('api_keys')
    .set({ last_used_at: nowIso })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', cutoffIso)]))
    .execute();
}
