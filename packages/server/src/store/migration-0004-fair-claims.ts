import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * What the fair claim needs (store/jobs.ts `claimJobs`): each tenant's round-robin position, and an index
 * that finds the tenants with queued work and each one's oldest queued job per language and zone without
 * reading the rest of its queue.
 */
export const fairClaimsMigration: Migration = {
  name: '0004_fair_claims',
  up: async (db, dialect) => {
    // The scheduler's turn at which the tenant last got a job; the lowest goes first (never served: 0).
    // One turn per job handed out: bigint on PostgreSQL, where integer would end at 2^31.
    await db.schema
      .alterTable('tenants')
      .addColumn('last_served_turn', sql.raw(dialect === 'postgres' ? 'bigint' : 'integer'), (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('tenants_by_served_turn').on('tenants').column('last_served_turn').execute();
    // Leading `status, tenant_id`: the skip scan over tenants with queued work; then one seek per
    // (language, zone) for a tenant's oldest queued job.
    await db.schema
      .createIndex('jobs_queue_by_tenant')
      .on('jobs')
      .columns(['status', 'tenant_id', 'language', 'zone', 'requested_at', 'id'])
      .execute();
  },
};
