import { sql } from 'kysely';
import type { Migration } from './migrations.js';

/**
 * Placement by version (issue 12, point 3): a job that asked for a version keeps the one it resolved to
 * in `language_version`, and a runner takes it only if it offers exactly that one. The fair claim's
 * index gains the version (as `coalesce(language_version, '')`, '' for "any version"), so a runner
 * without gcc 11 never reads the queued jobs that need it. It replaces jobs_queued_by_tenant, whose
 * columns are its prefix (the round-robin skip scan orders by tenant_id, language and uses it as well).
 */
export const versionPlacementMigration: Migration = {
  name: '0017_version_placement',
  up: async (db) => {
    await sql`create index jobs_queued_by_tenant_version
              on jobs (tenant_id, language, (coalesce(language_version, '')), (coalesce(zone, '')), requested_at, id)
              where status = 'queued'`.execute(db);
    await sql`drop index jobs_queued_by_tenant`.execute(db);
  },
};
