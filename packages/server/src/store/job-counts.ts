import { sql } from 'kysely';
import type { DbHandle } from './store.js';

/**
 * Jobs by status, from the counts the triggers on `jobs` keep (migration 0018): a handful of rows
 * whatever the number of jobs. On PostgreSQL the triggers append deltas (no counter row is locked by a
 * transition); they are folded into the counts here, in one statement, before the counts are read.
 */
export async function jobCountsByStatus(h: DbHandle): Promise<{ status: string; n: number }[]> {
  if (h.dialect === 'postgres') {
    await sql`
      with moved as (delete from job_status_deltas returning status, delta)
      insert into job_status_counts (status, n)
        select status, sum(delta) from moved group by status
      on conflict (status) do update set n = job_status_counts.n + excluded.n`.execute(h.db);
  }
  const rows = await h.db.selectFrom('job_status_counts').select(['status', 'n']).where('n', '>', 0).execute();
  return rows.map((r) => ({ status: r.status, n: Number(r.n) }));
}
