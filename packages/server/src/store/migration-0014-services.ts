import type { Migration } from './migrations.js';

/**
 * Services (issue 9).
 *
 * `services`: why it ended, its sandbox, when its TTL runs out, the last proxied request (activity), how
 * often the runner restarted its command, the zone asked for and whether it is public.
 * `service_tokens`: tokens scoped to one port of one service or session, stored as SHA-256 digests.
 */
export const servicesMigration: Migration = {
  name: '0014_services',
  up: async (db) => {
    for (const [column, type] of [
      ['reason', 'text'],
      ['sandbox_id', 'text'],
      ['expires_at', 'text'],
      ['last_activity_at', 'text'],
      ['restarts', 'integer'],
      ['zone', 'text'],
      ['public', 'integer'],
      ['log_tail', 'text'],
    ] as const) {
      await db.schema.alterTable('services').addColumn(column, type).execute();
    }
    await db.schema.createIndex('services_by_status').on('services').columns(['status', 'runner_id']).execute();
    await db.schema
      .createTable('service_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('owner_type', 'text', (c) => c.notNull())
      .addColumn('owner_id', 'text', (c) => c.notNull())
      .addColumn('port', 'integer', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema.createIndex('service_tokens_by_owner').on('service_tokens').columns(['owner_id', 'id']).execute();
  },
};
