import type { Migration } from './migrations.js';

/**
 * The audit's anchoring and visibility: `subject_agent_id` (the agent an event belongs to, so an agent
 * key's view is an indexed query, not a scan of details) and `hmac_key_id` (which audit key signed the
 * event; null for events written before the key existed, which carry only the unkeyed SHA-256 chain).
 */
export const auditAnchoringMigration: Migration = {
  name: '0007_audit_anchoring',
  up: async (db) => {
    await db.schema.alterTable('audit_events').addColumn('subject_agent_id', 'text').execute();
    await db.schema.alterTable('audit_events').addColumn('hmac_key_id', 'text').execute();
    await db.schema
      .createIndex('audit_events_by_subject_agent')
      .on('audit_events')
      .columns(['subject_agent_id', 'id'])
      .execute();
  },
};
