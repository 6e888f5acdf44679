import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { jobFleetMigration } from './migration-002-job-fleet.js';
import { fairClaimsMigration } from './migration-0004-fair-claims.js';
import { quotasMigration } from './migration-0005-quotas.js';
import { retentionMigration } from './migration-0006-retention.js';
import { auditAnchoringMigration } from './migration-0007-audit-anchoring.js';
import { runnerCredentialsMigration } from './migration-0008-runner-credentials.js';
import { workflowsMigration } from './migration-0009-workflows.js';
import { sessionsMigration } from './migration-0010-sessions.js';
import { keyLastUsedMigration } from './migration-0012-key-last-used.js';
import { servicesMigration } from './migration-0014-services.js';
import { compatMigration } from './migration-0016-compat.js';
import { versionPlacementMigration } from './migration-0017-version-placement.js';
import { hotPathMigration } from './migration-0018-hot-path.js';
import { queueOrderMigration } from './migration-0019-queue-order.js';
import { auditHeadTriggerMigration } from './migration-0020-audit-head-trigger.js';
import { sandboxCountsMigration } from './migration-0021-sandbox-counts.js';
import { jobFlagsMigration } from './migration-0022-job-flags.js';

export type DbDialect = 'sqlite' | 'postgres';

/** One migration: a stable name and an `up` that works on both dialects. Never edit one once shipped. */
export interface Migration {
  name: string;
  up: (db: Kysely<any>, dialect: DbDialect) => Promise<void>;
}

/** Raises on any UPDATE or DELETE of `table`: immutability enforced by the database itself. */
async function refuseChanges(db: Kysely<any>, dialect: DbDialect, table: string, what: string): Promise<void> {
  if (dialect === 'sqlite') {
    for (const op of ['UPDATE', 'DELETE']) {
      await sql
        .raw(
          `CREATE TRIGGER IF NOT EXISTS ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${table}
           BEGIN SELECT RAISE(ABORT, '${what} are immutable'); END`,
        )
        .execute(db);
    }
    return;
  }
  await sql
    .raw(
      `CREATE OR REPLACE FUNCTION kiln_refuse_${table}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '${what} are immutable'; END $$`,
    )
    .execute(db);
  await sql.raw(`DROP TRIGGER IF EXISTS ${table}_immutable ON ${table}`).execute(db);
  await sql
    .raw(
      `CREATE TRIGGER ${table}_immutable BEFORE UPDATE OR DELETE ON ${table}
       FOR EACH ROW EXECUTE FUNCTION kiln_refuse_${table}()`,
    )
    .execute(db);
  await sql.raw(`DROP TRIGGER IF EXISTS ${table}_no_truncate ON ${table}`).execute(db);
  await sql
    .raw(
      `CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table}
       FOR EACH STATEMENT EXECUTE FUNCTION kiln_refuse_${table}()`,
    )
    .execute(db);
}

const initial: Migration = {
  name: '0001_initial',
  async up(db, dialect) {
    // Sizes can pass 2^31: bigint on PostgreSQL (read back as numbers, see connect.ts).
    const big = dialect === 'postgres' ? 'bigint' : 'integer';

    await db.schema
      .createTable('tenants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('agents')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('agents_by_tenant').on('agents').columns(['tenant_id', 'id']).execute();

    await db.schema
      .createTable('api_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.references('tenants.id'))
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('operator', 'tenant', 'agent')`))
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .execute();

    await db.schema
      .createTable('policies')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('ruleset', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('policies_tenant_name', ['tenant_id', 'name'])
      .execute();

    await db.schema
      .createTable('policy_versions')
      .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('ruleset', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('policy_versions_pk', ['policy_id', 'version'])
      .execute();
    await refuseChanges(db, dialect, 'policy_versions', 'policy versions');

    await db.schema
      .createTable('runner_nodes')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('zone', 'text')
      .addColumn('capacity', 'integer', (c) => c.notNull())
      .addColumn('address', 'text')
      .addColumn('labels', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('languages', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('last_heartbeat_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
      .addColumn('policy_version', 'integer', (c) => c.notNull())
      .addColumn('language', 'text', (c) => c.notNull())
      .addColumn('language_version', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('requested_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('completed_at', 'text')
      .addColumn('exit_status', 'text')
      .addColumn('resource_usage', 'text')
      .addColumn('output_refs', 'text')
      .addColumn('verdict', 'text')
      .addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('max_attempts', 'integer', (c) => c.notNull().defaultTo(3))
      .addColumn('request', 'text', (c) => c.notNull())
      .addColumn('zone', 'text')
      .addColumn('runner_id', 'text', (c) => c.references('runner_nodes.id'))
      .addColumn('lease_expires_at', 'text')
      .addColumn('error', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('jobs_by_tenant').on('jobs').columns(['tenant_id', 'id']).execute();
    await db.schema.createIndex('jobs_by_status').on('jobs').columns(['status', 'requested_at']).execute();

    await db.schema
      .createTable('sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
      .addColumn('policy_version', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('ttl_seconds', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('last_activity_at', 'text', (c) => c.notNull())
      .addColumn('last_step_sequence', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('runner_id', 'text', (c) => c.references('runner_nodes.id'))
      .addColumn('language', 'text')
      .addColumn('ended_at', 'text')
      .execute();
    await db.schema.createIndex('sessions_by_tenant').on('sessions').columns(['tenant_id', 'id']).execute();

    await db.schema
      .createTable('session_steps')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('session_id', 'text', (c) => c.notNull().references('sessions.id'))
      .addColumn('sequence', 'integer', (c) => c.notNull())
      .addColumn('command', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('completed_at', 'text')
      .addColumn('exit_status', 'text')
      .addColumn('resource_usage', 'text')
      .addColumn('output_refs', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('session_steps_sequence', ['session_id', 'sequence'])
      .execute();

    await db.schema
      .createTable('artifacts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('owner_type', 'text', (c) =>
        c.notNull().check(sql`owner_type in ('job', 'session_step', 'workflow_step')`),
      )
      .addColumn('owner_id', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('size_bytes', sql.raw(big), (c) => c.notNull())
      .addColumn('checksum', 'text', (c) => c.notNull())
      .addColumn('storage_uri', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('artifacts_by_owner').on('artifacts').columns(['owner_type', 'owner_id']).execute();

    await db.schema
      .createTable('workflows')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('completed_at', 'text')
      .addColumn('spec', 'text')
      .addColumn('last_step_sequence', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();

    await db.schema
      .createTable('workflow_steps')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('workflow_id', 'text', (c) => c.notNull().references('workflows.id'))
      .addColumn('sequence', 'integer', (c) => c.notNull())
      .addColumn('name', 'text')
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('job_id', 'text', (c) => c.references('jobs.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('completed_at', 'text')
      .addColumn('spec', 'text')
      .addUniqueConstraint('workflow_steps_sequence', ['workflow_id', 'sequence'])
      .execute();

    await db.schema
      .createTable('services')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
      .addColumn('agent_id', 'text', (c) => c.references('agents.id'))
      .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
      .addColumn('policy_version', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('stopped_at', 'text')
      .addColumn('proxy_url', 'text')
      .addColumn('port', 'integer')
      .addColumn('runner_id', 'text', (c) => c.references('runner_nodes.id'))
      .addColumn('spec', 'text')
      .execute();
    await db.schema.createIndex('services_by_tenant').on('services').columns(['tenant_id', 'id']).execute();

    await db.schema
      .createTable('sandbox_instances')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('job', 'session', 'service')`))
      .addColumn('job_id', 'text', (c) => c.references('jobs.id'))
      .addColumn('session_id', 'text', (c) => c.references('sessions.id'))
      .addColumn('service_id', 'text', (c) => c.references('services.id'))
      .addColumn('runner_id', 'text', (c) => c.notNull().references('runner_nodes.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('terminated_at', 'text')
      // Exactly one owner, checked by the database.
      .addCheckConstraint(
        'sandbox_instances_one_owner',
        sql`(case when job_id is null then 0 else 1 end) + (case when session_id is null then 0 else 1 end)
            + (case when service_id is null then 0 else 1 end) = 1`,
      )
      .execute();

    await db.schema
      .createTable('audit_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text')
      .addColumn('chain_id', 'text', (c) => c.notNull())
      .addColumn('chain_seq', 'integer', (c) => c.notNull())
      .addColumn('actor_id', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('resource_type', 'text', (c) => c.notNull())
      .addColumn('resource_id', 'text')
      .addColumn('timestamp', 'text', (c) => c.notNull())
      .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'denied', 'error')`))
      .addColumn('details', 'text', (c) => c.notNull())
      .addColumn('prev_hash', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addUniqueConstraint('audit_events_chain_seq', ['chain_id', 'chain_seq'])
      .execute();
    await db.schema.createIndex('audit_events_by_tenant').on('audit_events').columns(['tenant_id', 'id']).execute();
    await refuseChanges(db, dialect, 'audit_events', 'audit events');

    await db.schema
      .createTable('audit_chain_heads')
      .addColumn('chain_id', 'text', (c) => c.primaryKey())
      .addColumn('last_seq', 'integer', (c) => c.notNull())
      .addColumn('last_hash', 'text', (c) => c.notNull())
      .execute();
  },
};

/**
 * Every migration, in order. Later issues append here; a database records which ran in
 * `kiln_migrations`, so running them at every start is idempotent.
 */
export const MIGRATIONS: readonly Migration[] = [
  initial,
  jobFleetMigration,
  fairClaimsMigration,
  quotasMigration,
  retentionMigration,
  auditAnchoringMigration,
  runnerCredentialsMigration,
  workflowsMigration,
  sessionsMigration,
  keyLastUsedMigration,
  servicesMigration,
  compatMigration,
  versionPlacementMigration,
  hotPathMigration,
  queueOrderMigration,
  auditHeadTriggerMigration,
  sandboxCountsMigration,
  jobFlagsMigration,
];

/**
 * Runs the migrations that have not run yet, each in its own transaction. On PostgreSQL a transaction-
 * scoped advisory lock keeps two replicas starting together from racing.
 */
export async function migrate(db: Kysely<Database>, dialect: DbDialect, migrations = MIGRATIONS): Promise<string[]> {
  const applied: string[] = [];
  for (const migration of migrations) {
    const ran = await db.transaction().execute(async (trx) => {
      // The lock comes first, even before the bookkeeping table exists, so replicas starting together
      // migrate one after another instead of racing on CREATE TABLE.
      if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(4242001)`.execute(trx);
      await trx.schema
        .createTable('kiln_migrations')
        .ifNotExists()
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('applied_at', 'text', (c) => c.notNull())
        .execute();
      const done = await trx
        .selectFrom('kiln_migrations')
        .select('name')
        .where('name', '=', migration.name)
        .executeTakeFirst();
      if (done) return false;
      await migration.up(trx as Kysely<any>, dialect);
      await trx
        .insertInto('kiln_migrations')
        .values({ name: migration.name, applied_at: new Date().toISOString() })
        .execute();
      return true;
    });
    if (ran) applied.push(migration.name);
  }
  return applied;
}
