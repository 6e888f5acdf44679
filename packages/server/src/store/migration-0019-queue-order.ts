import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * A tenant's queue in the order it is served (issue 14): the claim first reads the few oldest queued
 * jobs of a tenant in one seek and takes the first this runner can run, instead of one seek per
 * (language, version, zone) the runner offers (a hundred and more with the whole catalog). The per-offer
 * walk over jobs_queued_by_tenant_version stays for a queue whose head this runner cannot take.
 */
export const queueOrderMigration: Migration = {
  name: '0019_queue_order',
  up: async (db) => {
    await sql`create index jobs_queued_in_order on jobs (tenant_id, requested_at, id) where status = 'queued'`.execute(db);
  },
};
