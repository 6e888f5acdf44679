import { sql, type Kysely } from 'kysely';
import type { DbDialect } from './migrations.js';

/**
 * Rows by status, kept by triggers (migrations 0018 for jobs, 0021 for sandbox instances), so a count
 * reads a handful of rows whatever the table's size. `kind` names what is made: `<kind>_status_counts`,
 * and triggers `<kind>_counts_insert|update|delete` on `table`. SQLite (one writer) updates the counts in
 * place; PostgreSQL's triggers only append to `<kind>_status_deltas` (no counter row is locked, so no
 * transition waits for another and none can deadlock), folded in when read (store/job-counts.ts).
 * Migrations that ran keep calling this: what it makes must not change.
 */
export async function createStatusCounts(db: Kysely<any>, dialect: DbDialect, kind: 'job' | 'sandbox', table: string): Promise<void> {
  const counts = `${kind}_status_counts`;
  const trigger = (op: string) => `${kind}_counts_${op}`;
  await db.schema
    .createTable(counts)
    .addColumn('status', 'text', (c) => c.primaryKey())
    .addColumn('n', 'bigint', (c) => c.notNull())
    .execute();
  await sql.raw(`insert into ${counts} (status, n) select status, count(*) from ${table} group by status`).execute(db);

  if (dialect === 'sqlite') {
    const bump = (status: string, delta: string) =>
      `insert into ${counts} (status, n) values (${status}, ${delta})
           on conflict (status) do update set n = n + ${delta};`;
    await sql.raw(`create trigger ${trigger('insert')} after insert on ${table} begin ${bump('new.status', '1')} end`).execute(db);
    await sql
      .raw(
        `create trigger ${trigger('update')} after update of status on ${table} when old.status <> new.status begin
             ${bump('old.status', '-1')} ${bump('new.status', '1')} end`,
      )
      .execute(db);
    await sql.raw(`create trigger ${trigger('delete')} after delete on ${table} begin ${bump('old.status', '-1')} end`).execute(db);
    return;
  }
  const deltas = `${kind}_status_deltas`;
  const fn = `kiln_${kind}_counts`;
  await db.schema
    .createTable(deltas)
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('delta', 'integer', (c) => c.notNull())
    .execute();
  await sql
    .raw(
      `create function ${fn}() returns trigger language plpgsql as $$
         begin
           if tg_op in ('UPDATE', 'DELETE') then insert into ${deltas} (status, delta) values (old.status, -1); end if;
           if tg_op in ('UPDATE', 'INSERT') then insert into ${deltas} (status, delta) values (new.status, 1); end if;
           return null;
         end $$`,
    )
    .execute(db);
  await sql.raw(`create trigger ${trigger('insert')} after insert on ${table} for each row execute function ${fn}()`).execute(db);
  await sql
    .raw(
      `create trigger ${trigger('update')} after update of status on ${table} for each row
           when (old.status is distinct from new.status) execute function ${fn}()`,
    )
    .execute(db);
  await sql.raw(`create trigger ${trigger('delete')} after delete on ${table} for each row execute function ${fn}()`).execute(db);
}
