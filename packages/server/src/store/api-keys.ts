import type { ApiKey } from '@kiln/core';
import type { Selectable } from 'kysely';
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
