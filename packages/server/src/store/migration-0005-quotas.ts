import type { Migration } from './migrations.js';

/**
 * The operator's per-tenant quota overrides (JSON, as policies' rulesets are): one row per tenant that has
 * any; a tenant without a row follows the configured defaults.
 */
export const quotasMigration: Migration = {
  name: '0005_quotas',
  up: async (db) => {
    await db.schema
      .createTable('tenant_quotas')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
      .addColumn('overrides', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('updated_by', 'text', (c) => c.notNull())
      .execute();
  },
};
