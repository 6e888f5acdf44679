import { sql } from 'kysely';
import type { DbHandle } from './store.js';

/**
 * Jobs and sandbox instances by status, from the counts their triggers keep (migrations 0018 and 0021):
 * a handful of rows whatever the number of jobs. On PostgreSQL the triggers append deltas (no counter
 * row is locked by a transition); they are folded into the counts here, in one statement, before the
 * counts are read.
 */
export function jobCountsByStatus(h: DbHandle): Promise<{ status: string; n: number }[]> {
  return countsByStatus(h, 'job');
}

export function sandboxCountsByStatus(h: DbHandle): Promise<{ status: string; n: number }[]> {
  return countsByStatus(h, 'sandbox');
}

async function countsByStatus(h: DbHandle, kind: 'job' | 'sandbox'): Promise<{ status: string; n: number }[]> {
  const counts = kind === 'job' ? 'job_status_counts' : 'sandbox_status_counts';
  if (h.dialect === 'postgres') {
    const deltas = sql.table(kind === 'job' ? 'job_status_deltas' : 'sandbox_status_deltas');
    await sql`
      with moved as (delete from ${deltas} returning status, delta)
      insert into ${sql.table(counts)} (status, n)
        select status, sum(delta) from moved group by status
      on conflict (status) do update set n = ${sql.table(counts)}.n + excluded.n`.execute(h.db);
  }
  const rows = await h.db.selectFrom(counts).select(['status', 'n']).where('n', '>', 0).execute();
  return rows.map((r) => ({ status: r.status, n: Number(r.n) }));
}
