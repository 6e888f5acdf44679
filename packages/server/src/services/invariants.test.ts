import { DEFAULT_RULESET, KilnError, ManualClock, newId, toRfc3339 } from '@kiln/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAuditEvent } from '../store/audit.js';
import { migrate } from '../store/migrations.js';
import { listPolicyVersions } from '../store/policies.js';
import { appendSessionStep, appendWorkflowStep } from '../store/steps.js';
import { DB_KINDS, openTestStore, type TestStore } from '../store/testing.js';
import { verifyAuditChain } from './audit.js';
import type { Principal, ServiceDeps } from './context.js';
import { createPolicy, publishPolicy } from './policies.js';
import { changeTenantStatus, createTenant } from './tenants.js';

const operator: Principal = { kind: 'operator' };

async function settle<T>(promises: Promise<T>[]) {
  const results = await Promise.allSettled(promises);
  return {
    ok: results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<T>).value),
    errors: results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown),
  };
}

describe.each(DB_KINDS)('invariants on %s', (kind) => {
  let t: TestStore;
  let deps: ServiceDeps;
  let tenantId: string;
  let admin: Principal;

  beforeAll(async () => {
    t = await openTestStore(kind);
    deps = { store: t.store, clock: new ManualClock() };
    tenantId = (await createTenant(deps, operator, { name: 'acme' })).id;
    admin = { kind: 'tenant', tenantId, keyId: newId('key'), tenantStatus: 'active' };
  });
  afterAll(() => t.cleanup());

  it('runs migrations once: a second run applies nothing', async () => {
    expect(await migrate(t.store.db, t.store.dialect)).toEqual([]);
    const tables = [
      'tenants', 'agents', 'api_keys', 'policies', 'policy_versions', 'jobs', 'sessions', 'session_steps',
      'artifacts', 'workflows', 'workflow_steps', 'services', 'runner_nodes', 'sandbox_instances', 'audit_events',
    ] as const;
    for (const table of tables) {
      const rows = await t.store.db.selectFrom(table).select(sql<number>`count(*)`.as('n')).execute();
      expect(rows).toHaveLength(1);
    }
  });

  it('has every seed field of the thirteen entities, in snake_case, plus the listed extras', async () => {
    const fields: Record<string, string[]> = {
      tenants: ['id', 'name', 'status', 'created_at'],
      agents: ['id', 'tenant_id', 'name', 'type', 'status', 'created_at'],
      policies: ['id', 'tenant_id', 'name', 'version', 'ruleset', 'created_at', 'updated_at'],
      jobs: [
        'id', 'tenant_id', 'agent_id', 'policy_id', 'language', 'status', 'requested_at', 'started_at', 'completed_at',
        'exit_status', 'resource_usage', 'output_refs', 'policy_version', 'attempt', 'verdict', 'runner_id',
        'lease_expires_at', 'request', 'zone', 'error',
      ],
      sessions: [
        'id', 'tenant_id', 'agent_id', 'policy_id', 'status', 'ttl_seconds', 'created_at', 'expires_at',
        'last_activity_at', 'policy_version',
      ],
      session_steps: [
        'id', 'session_id', 'sequence', 'command', 'status', 'started_at', 'completed_at', 'exit_status',
        'resource_usage', 'output_refs',
      ],
      artifacts: ['id', 'tenant_id', 'owner_type', 'owner_id', 'name', 'size_bytes', 'checksum', 'storage_uri', 'created_at'],
      workflows: ['id', 'tenant_id', 'status', 'created_at', 'started_at', 'completed_at'],
      workflow_steps: ['id', 'workflow_id', 'sequence', 'agent_id', 'job_id', 'status', 'started_at', 'completed_at'],
      services: ['id', 'tenant_id', 'policy_id', 'status', 'started_at', 'stopped_at', 'proxy_url', 'policy_version', 'port'],
      runner_nodes: ['id', 'status', 'zone', 'capacity', 'last_heartbeat_at', 'name', 'address', 'labels', 'languages'],
      sandbox_instances: ['id', 'job_id', 'session_id', 'runner_id', 'status', 'created_at', 'terminated_at', 'service_id', 'kind'],
      audit_events: [
        'id', 'tenant_id', 'actor_id', 'action', 'resource_type', 'resource_id', 'timestamp', 'outcome', 'details',
        'prev_hash', 'hash',
      ],
      api_keys: ['id', 'tenant_id', 'agent_id', 'kind', 'hash', 'created_at', 'revoked_at'],
      policy_versions: ['policy_id', 'version', 'ruleset', 'created_at'],
    };
    for (const [table, columns] of Object.entries(fields)) {
      // Selecting a missing column fails on both databases; zero rows keeps it cheap.
      await expect(
        sql.raw(`select ${columns.join(', ')} from ${table} where 1 = 0`).execute(t.store.db),
        table,
      ).resolves.toBeDefined();
    }
    await expect(sql.raw('select no_such_column from tenants where 1 = 0').execute(t.store.db)).rejects.toThrow();
  });

  it('publishes exactly one of six concurrent versions with the same expected_version', async () => {
    const policy = await createPolicy(deps, admin, { name: 'race' });
    const attempts = Array.from({ length: 6 }, (_, i) =>
      publishPolicy(deps, admin, policy.id, {
        ruleset: { ...DEFAULT_RULESET, concurrency: { max_running_jobs: i + 1 } },
        expected_version: 1,
      }),
    );
    const { ok, errors } = await settle(attempts);
    expect(ok).toHaveLength(1);
    expect(ok[0]!.version).toBe(2);
    expect(errors).toHaveLength(5);
    for (const err of errors) {
      expect(err).toBeInstanceOf(KilnError);
      expect((err as KilnError).code).toBe('CONFLICT');
      expect((err as KilnError).status).toBe(409);
    }
    // The winner's ruleset is the one stored, and the history has 1 and 2, no gap and no repeat.
    const versions = await listPolicyVersions(t.store, policy.id, { limit: 50 });
    expect(versions.items.map((v) => v.version)).toEqual([1, 2]);
    expect(versions.items[1]!.ruleset).toEqual(ok[0]!.ruleset);

    const third = await publishPolicy(deps, admin, policy.id, { ruleset: DEFAULT_RULESET, expected_version: 2 });
    expect(third.version).toBe(3);
    await expect(
      publishPolicy(deps, admin, policy.id, { ruleset: DEFAULT_RULESET, expected_version: 2 }),
    ).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(
      publishPolicy(deps, admin, policy.id, { ruleset: DEFAULT_RULESET, expected_version: 7 }),
    ).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('keeps past policy versions immutable in the database itself', async () => {
    const policy = await createPolicy(deps, admin, { name: 'frozen' });
    await expect(
      sql`update policy_versions set ruleset = '{}' where policy_id = ${policy.id}`.execute(t.store.db),
    ).rejects.toThrow(/immutable/);
    await expect(sql`delete from policy_versions where policy_id = ${policy.id}`.execute(t.store.db)).rejects.toThrow(
      /immutable/,
    );
    // A repeated version is refused by the history's key even if the conditional update were bypassed.
    await expect(
      t.store.db
        .insertInto('policy_versions')
        .values({ policy_id: policy.id, version: 1, ruleset: '{}', created_at: 'x', created_by: 'x' })
        .execute(),
    ).rejects.toThrow();
  });

  it('numbers concurrent session steps 1..N with no gap and no repeat', async () => {
    const now = deps.clock.nowMs();
    const policy = await createPolicy(deps, admin, { name: 'sessions' });
    const sessionId = newId('session', now);
    await t.store.db
      .insertInto('sessions')
      .values({
        id: sessionId,
        tenant_id: tenantId,
        agent_id: null,
        policy_id: policy.id,
        policy_version: 1,
        status: 'active',
        ttl_seconds: 60,
        created_at: toRfc3339(now),
        expires_at: toRfc3339(now + 60_000),
        last_activity_at: toRfc3339(now),
        last_step_sequence: 0,
        runner_id: null,
        language: null,
        ended_at: null,
      })
      .execute();
    const steps = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        t.store.transaction((tx) => appendSessionStep(tx, { sessionId, command: `echo ${i}`, nowMs: now })),
      ),
    );
    expect(steps.map((s) => s.sequence).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    // The UNIQUE(session_id, sequence) backstop.
    await expect(
      t.store.db
        .insertInto('session_steps')
        .values({ ...steps[0]!, id: newId('session_step') })
        .execute(),
    ).rejects.toThrow();
    await expect(
      t.store.transaction((tx) => appendSessionStep(tx, { sessionId: 'ses_missing', command: 'x', nowMs: now })),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('numbers concurrent workflow steps 1..N per workflow', async () => {
    const now = deps.clock.nowMs();
    const ids = [newId('workflow', now), newId('workflow', now)];
    for (const id of ids) {
      await t.store.db
        .insertInto('workflows')
        .values({
          id,
          tenant_id: tenantId,
          agent_id: null,
          status: 'queued',
          created_at: toRfc3339(now),
          started_at: null,
          completed_at: null,
          spec: null,
          last_step_sequence: 0,
        })
        .execute();
    }
    const steps = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        t.store.transaction((tx) => appendWorkflowStep(tx, { workflowId: ids[i % 2]!, nowMs: now, name: `s${i}` })),
      ),
    );
    for (const id of ids) {
      const seqs = steps.filter((s) => s.workflow_id === id).map((s) => s.sequence).sort((a, b) => a - b);
      expect(seqs).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    }
  });

  it('refuses UPDATE and DELETE of audit events, even by direct SQL', async () => {
    const row = await t.store.db.selectFrom('audit_events').select('id').executeTakeFirstOrThrow();
    await expect(sql`update audit_events set outcome = 'denied' where id = ${row.id}`.execute(t.store.db)).rejects.toThrow(
      /immutable/,
    );
    await expect(sql`delete from audit_events where id = ${row.id}`.execute(t.store.db)).rejects.toThrow(/immutable/);
    await expect(sql`delete from audit_events`.execute(t.store.db)).rejects.toThrow(/immutable/);
    if (kind === 'postgres') await expect(sql`truncate audit_events`.execute(t.store.db)).rejects.toThrow(/immutable/);
    const still = await t.store.db.selectFrom('audit_events').select('id').where('id', '=', row.id).executeTakeFirst();
    expect(still?.id).toBe(row.id);
  });

  it('keeps one unbroken hash chain per tenant under concurrent appends', async () => {
    const other = (await createTenant(deps, operator, { name: 'chain' })).id;
    const principal: Principal = { kind: 'tenant', tenantId: other, keyId: newId('key'), tenantStatus: 'active' };
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        t.store.transaction((tx) =>
          appendAuditEvent(
            tx,
            {
              tenant_id: other,
              actor_id: 'a',
              action: 'test.append',
              resource_type: 'test',
              resource_id: String(i),
              outcome: 'success',
              details: { i },
            },
            deps.clock.nowMs(),
          ),
        ),
      ),
    );
    const result = await verifyAuditChain(deps, principal);
    expect(result).toMatchObject({ ok: true, count: 31 }); // tenant.create + 30
    const seqs = await t.store.db
      .selectFrom('audit_events')
      .select('chain_seq')
      .where('chain_id', '=', other)
      .orderBy('chain_seq')
      .execute();
    expect(seqs.map((r) => r.chain_seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
  });

  it('suspending a tenant cancels its queued jobs and terminates its sessions and services in one go', async () => {
    const victim = (await createTenant(deps, operator, { name: 'victim' })).id;
    const policy = await t.store.db
      .selectFrom('policies')
      .select('id')
      .where('tenant_id', '=', victim)
      .executeTakeFirstOrThrow();
    const now = toRfc3339(deps.clock.nowMs());
    const job = (status: string) => ({
      id: newId('job'),
      tenant_id: victim,
      agent_id: null,
      policy_id: policy.id,
      policy_version: 1,
      language: 'python',
      language_version: null,
      status,
      requested_at: now,
      started_at: null,
      completed_at: null,
      exit_status: null,
      resource_usage: null,
      output_refs: null,
      verdict: null,
      attempt: 0,
      max_attempts: 3,
      request: '{}',
      zone: null,
      runner_id: null,
      lease_expires_at: null,
      error: null,
      updated_at: now,
    });
    await t.store.db.insertInto('jobs').values([job('queued'), job('queued'), job('succeeded')]).execute();
    const service = (status: string) => ({
      id: newId('service'),
      tenant_id: victim,
      agent_id: null,
      policy_id: policy.id,
      policy_version: 1,
      status,
      created_at: now,
      started_at: null,
      stopped_at: null,
      proxy_url: null,
      port: null,
      runner_id: null,
      spec: null,
    });
    await t.store.db.insertInto('services').values([service('running'), service('starting'), service('stopped')]).execute();

    const session = (status: string) => ({
      id: newId('session'),
      tenant_id: victim,
      agent_id: null,
      policy_id: policy.id,
      policy_version: 1,
      status,
      ttl_seconds: 60,
      created_at: now,
      expires_at: now,
      last_activity_at: now,
      last_step_sequence: 0,
      runner_id: null,
      language: null,
      ended_at: null,
    });
    await t.store.db.insertInto('sessions').values([session('active'), session('expired')]).execute();

    await changeTenantStatus(deps, operator, victim, 'suspended');
    const sessions = await t.store.db.selectFrom('sessions').select('status').where('tenant_id', '=', victim).execute();
    expect(sessions.map((x) => x.status).sort()).toEqual(['expired', 'terminated']);
    const jobs = await t.store.db.selectFrom('jobs').select('status').where('tenant_id', '=', victim).execute();
    expect(jobs.map((j) => j.status).sort()).toEqual(['canceled', 'canceled', 'succeeded']);
    const services = await t.store.db.selectFrom('services').select('status').where('tenant_id', '=', victim).execute();
    expect(services.map((s) => s.status).sort()).toEqual(['stopped', 'terminated', 'terminated']);
    const event = await t.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('tenant_id', '=', victim)
      .where('action', '=', 'tenant.suspend')
      .executeTakeFirstOrThrow();
    expect(JSON.parse(event.details)).toMatchObject({ canceled_jobs: 2, terminated_sessions: 1, terminated_services: 2 });

    await expect(changeTenantStatus(deps, operator, victim, 'suspended')).rejects.toMatchObject({
      code: 'INVALID_TRANSITION',
    });
    expect((await changeTenantStatus(deps, operator, victim, 'active')).status).toBe('active');
  });

  it('names the first tampered event when verifying a chain', async () => {
    const target = (await createTenant(deps, operator, { name: 'tamper' })).id;
    const principal: Principal = { kind: 'tenant', tenantId: target, keyId: newId('key'), tenantStatus: 'active' };
    for (let i = 0; i < 5; i++) await createPolicy(deps, principal, { name: `p${i}` });
    expect(await verifyAuditChain(deps, principal)).toMatchObject({ ok: true, count: 6 });
    const victim = await t.store.db
      .selectFrom('audit_events')
      .select('id')
      .where('chain_id', '=', target)
      .where('chain_seq', '=', 3)
      .executeTakeFirstOrThrow();
    // Only a test may do this: drop the guard, rewrite history, and see the chain catch it.
    if (kind === 'sqlite') {
      await sql`drop trigger audit_events_no_update`.execute(t.store.db);
    } else {
      await sql`drop trigger audit_events_immutable on audit_events`.execute(t.store.db);
    }
    await sql`update audit_events set details = ${JSON.stringify({ name: 'forged' })} where id = ${victim.id}`.execute(
      t.store.db,
    );
    const result = await verifyAuditChain(deps, principal);
    expect(result.ok).toBe(false);
    expect(result.broken_event_id).toBe(victim.id);
  });
});
