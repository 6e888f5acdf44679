import type { SelectQueryBuilder } from 'kysely';
import { decodeCursor, page } from '../store/pagination.js';
import type { Database } from '../store/schema.js';
import type { DbHandle } from '../store/store.js';
import { requireTenantMember } from './access.js';
import type { Principal } from './context.js';

/** `?status=&agent_id=&limit=&cursor=` (and for jobs `&language=&verdict=`) of the lists of a tenant's work (jobs, sessions, services). */
export interface TenantWorkListQuery {
  limit: number;
  cursor?: string | undefined;
  status?: string | undefined;
  agent_id?: string | undefined;
  /** jobs only (their routes alone accept these) */
  language?: string | undefined;
  verdict?: string | undefined;
}

type WorkTable = 'jobs' | 'sessions' | 'services';

/**
 * One page of a tenant's work rows, newest first: its tenant's for a tenant admin, only its own for an
 * agent key (whatever `agent_id` it asks for).
 */
export async function listTenantWork<T extends WorkTable>(
  h: DbHandle,
  principal: Principal,
  table: T,
  query: TenantWorkListQuery,
): Promise<{ items: Database[T][]; next_cursor: string | null }> {
  const tenantId = requireTenantMember(principal);
  const after = decodeCursor(query.cursor);
  // One shape for both tables: the columns filtered on are common to them.
  let q = h.db.selectFrom(table as 'jobs').selectAll().where('tenant_id', '=', tenantId).orderBy('id', 'desc').limit(query.limit + 1) as SelectQueryBuilder<Database, 'jobs', Database['jobs']>;
  if (after) q = q.where('id', '<', after);
  if (query.status) q = q.where('status', '=', query.status);
  if (query.agent_id) q = q.where('agent_id', '=', query.agent_id);
  if (query.language) q = q.where('language', '=', query.language);
  if (query.verdict) q = q.where('verdict', '=', query.verdict);
  if (principal.kind === 'agent') q = q.where('agent_id', '=', principal.agentId);
  return page(await q.execute(), query.limit) as unknown as { items: Database[T][]; next_cursor: string | null };
}
