import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * The audit chain's head follows each appended event by a trigger (issue 14): an append is the head's
 * upsert (which reads it and, on PostgreSQL, locks it) and the event's insert, with no third statement.
 * An event that names a chain without a head (a seeded or imported chain) moves no head.
 */
export const auditHeadTriggerMigration: Migration = {
  name: '0020_audit_head_trigger',
  up: async (db, dialect) => {
    if (dialect === 'sqlite') {
      await sql`create trigger audit_chain_head_follows after insert on audit_events begin
                  update audit_chain_heads set last_seq = new.chain_seq, last_hash = new.hash where chain_id = new.chain_id;
                end`.execute(db);
      return;
    }
    await sql`create function kiln_audit_chain_head_follows() returns trigger language plpgsql as $$
              begin
                update audit_chain_heads set last_seq = new.chain_seq, last_hash = new.hash where chain_id = new.chain_id;
                return null;
              end $$`.execute(db);
    await sql`create trigger audit_chain_head_follows after insert on audit_events
              for each row execute function kiln_audit_chain_head_follows()`.execute(db);
  },
};
