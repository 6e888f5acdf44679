import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * Sandbox instances by status, kept by triggers as jobs' are (migration 0018): `/metrics` read them by a
 * `group by` over every sandbox row, one per job attempt ever run, so each scrape cost more as the
 * history grew. SQLite's triggers update the counts in place (one writer); PostgreSQL's append deltas,
 * folded when read, so no sandbox transition waits on a counter row.
 */
export const sandboxCountsMigration: Migration = {
  name: '0021_sandbox_counts',
  up: async (db, dialect) => {
    await db.schema
      .createTable('sandbox_status_counts')
      .addColumn('status', 'text', (c) => c.primaryKey())
      .addColumn('n', 'bigint', (c) => c.notNull())
      .execute();
    await sql`insert into sandbox_status_counts (status, n) select status, count(*) from sandbox_instances group by status`.execute(db);
    if (dialect === 'sqlite') {
      const bump = (status: string, delta: string) =>
        `insert into sandbox_status_counts (status, n) values (${status}, ${delta})
           on conflict (status) do update set n = n + ${delta};`;
      await sql.raw(`create trigger sandbox_counts_insert after insert on sandbox_instances begin ${bump('new.status', '1')} end`).execute(db);
      await sql
        .raw(
          `create trigger sandbox_counts_update after update of status on sandbox_instances when old.status <> new.status begin
             ${bump('old.status', '-1')} ${bump('new.status', '1')} end`,
        )
        .execute(db);
      await sql.raw(`create trigger sandbox_counts_delete after delete on sandbox_instances begin ${bump('old.status', '-1')} end`).execute(db);
      return;
    }
    await db.schema
      .createTable('sandbox_status_deltas')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('delta', 'integer', (c) => c.notNull())
      .execute();
    await sql
      .raw(
        `create function kiln_sandbox_counts() returns trigger language plpgsql as $$
         begin
           if tg_op in ('UPDATE', 'DELETE') then insert into sandbox_status_deltas (status, delta) values (old.status, -1); end if;
           if tg_op in ('UPDATE', 'INSERT') then insert into sandbox_status_deltas (status, delta) values (new.status, 1); end if;
           return null;
         end $$`,
      )
      .execute(db);
    await sql.raw(`create trigger sandbox_counts_insert after insert on sandbox_instances for each row execute function kiln_sandbox_counts()`).execute(db);
    await sql
      .raw(
        `create trigger sandbox_counts_update after update of status on sandbox_instances for each row
           when (old.status is distinct from new.status) execute function kiln_sandbox_counts()`,
      )
      .execute(db);
    await sql.raw(`create trigger sandbox_counts_delete after delete on sandbox_instances for each row execute function kiln_sandbox_counts()`).execute(db);
  },
};
