import type { Migration } from './migrations.js';
import { createStatusCounts } from './status-count-triggers.js';

/**
 * Sandbox instances by status, kept by triggers as jobs' are (migration 0018): `/metrics` read them by a
 * `group by` over every sandbox row, one per job attempt ever run, so each scrape cost more as the
 * history grew.
 */
export const sandboxCountsMigration: Migration = {
  name: '0021_sandbox_counts',
  up: (db, dialect) => createStatusCounts(db, dialect, 'sandbox', 'sandbox_instances'),
};
