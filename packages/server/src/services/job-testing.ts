import { PlaneEvents } from './plane-events.js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  DEFAULT_POLICY_NAME,
  DEFAULT_TENANT_QUOTA,
  KilnError,
  ManualClock,
  newId,
  type CompletionReport,
  type CreateJobRequest,
  type ErrorCode,
  type RunnerLanguage,
  type TenantQuota,
  type UploadedBlob,
} from '@kiln/core';
import { expect } from 'vitest';
import { createPostgresDatabase } from '../../../../test/support/databases.js';
import { createArtifactStore } from '../artifacts/index.js';
import { queuedJobRow, type JobRow } from '../store/jobs.js';
import { findPolicyByName } from '../store/policies.js';
import { openTestStore } from '../store/testing.js';
import { openStore, type DbDialect, type Store } from '../store/store.js';
import { createAgent } from './agents.js';
import { DEFAULT_STORAGE_SETTINGS, type StorageSettings } from './artifact-storage.js';
import type { Principal } from './context.js';
import { DEFAULT_FLEET_SETTINGS, DEFAULT_STREAM_SETTINGS, type FleetSettings, type JobDeps } from './job-deps.js';
import { JobWatchHub } from './job-watchers.js';
import { LiveOutput } from './live-output.js';
import { createNotifier } from './notifier.js';
import { registerRunner, uploadJobBlob } from './runner-protocol.js';
import { createTenant } from './tenants.js';

/**
 * A job plane for service tests: a fresh store of either kind, the notifier that kind gets in production
 * (in-process on SQLite, LISTEN/NOTIFY on PostgreSQL), a temp-folder artifact store and a ManualClock.
 */
export interface JobBed {
  kind: DbDialect;
  deps: JobDeps;
  store: Store;
  clock: ManualClock;
  /** A tenant (with its default policy), an admin principal and an agent principal. */
  newTenant(name: string): Promise<TestTenant>;
  /** Registers a runner; answers its id. */
  /** Registers a runner offering `languages` (python 3.11.2 each), or exactly `offers`. */
  runner(name: string, options?: { zone?: string; languages?: string[]; offers?: RunnerLanguage[]; capacity?: number }): Promise<string>;
  /** The runner that holds a job's lease (a runner id that holds nothing when none does). */
  holder(jobId: string): Promise<string>;
  /** Uploads `text` as a blob of the job's attempt, as the runner holding it. */
  upload(jobId: string, attempt: number, text: string): Promise<UploadedBlob>;
  /** A completion report for an attempt with the given stdout (stderr empty) and artifacts. */
  report(jobId: string, attempt: number, options?: Partial<CompletionReport> & { stdoutText?: string }): Promise<CompletionReport>;
  /** Forgets every job, sandbox, artifact row and runner, so each test starts with an empty queue and fleet. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export interface TestTenant {
  tenantId: string;
  policyId: string;
  admin: Principal;
  agentId: string;
  agent: Principal;
}

/** Test timings: a short heartbeat long poll (tests do not wait a second for nothing); the rest as shipped. */
export const TEST_FLEET: FleetSettings = { ...DEFAULT_FLEET_SETTINGS, heartbeatIntervalMs: 20 };

export async function openJobBed(
  kind: DbDialect,
  fleet: Partial<FleetSettings> = {},
  storage: Partial<StorageSettings> = {},
  quota: Partial<TenantQuota> = {},
): Promise<JobBed> {
  let store: Store;
  let dropStore: () => Promise<void>;
  let databaseUrl: string | undefined;
  if (kind === 'sqlite') {
    const t = await openTestStore('sqlite');
    store = t.store;
    dropStore = t.cleanup;
  } else {
    // Like openTestStore, but the URL is kept: the PostgreSQL notifier LISTENs on the same database.
    const database = await createPostgresDatabase();
    databaseUrl = database.url;
    store = await openStore({ kind: 'postgres', url: database.url, poolSize: 10 });
    dropStore = async () => {
      await store.close();
      await database.drop();
    };
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'kiln-job-test-'));
  const clock = new ManualClock();
  const notifier = await createNotifier(databaseUrl ? { kind: 'postgres', url: databaseUrl } : { kind: 'sqlite' });
  const deps: JobDeps = {
    store,
    clock,
    notifier,
    artifacts: createArtifactStore({ dataDir }),
    fleet: { ...TEST_FLEET, ...fleet },
    storage: { ...DEFAULT_STORAGE_SETTINGS, ...storage },
    quotaDefaults: { ...DEFAULT_TENANT_QUOTA, ...quota },
    liveOutput: new LiveOutput(),
    streams: DEFAULT_STREAM_SETTINGS,
    watchers: new JobWatchHub({ store, notifier }),
    shutdown: new AbortController().signal,
    secretsKey: randomBytes(32),
    events: new PlaneEvents(),
  };
  const operator: Principal = { kind: 'operator' };

  const bed: JobBed = {
    kind,
    deps,
    store,
    clock,
    async newTenant(name) {
      const tenant = await createTenant(deps, operator, { name });
      const policy = await findPolicyByName(store, tenant.id, DEFAULT_POLICY_NAME);
      const admin: Principal = { kind: 'tenant', tenantId: tenant.id, keyId: newId('key'), tenantStatus: 'active' };
      const agent = await createAgent(deps, admin, { name: `${name}-bot`, type: 'test' });
      return {
        tenantId: tenant.id,
        policyId: policy!.id,
        admin,
        agentId: agent.id,
        agent: { kind: 'agent', tenantId: tenant.id, agentId: agent.id, keyId: newId('key'), tenantStatus: 'active' },
      };
    },
    async runner(name, options = {}) {
      const languages: RunnerLanguage[] =
        options.offers ?? (options.languages ?? ['python']).map((l) => ({ name: l, version: '3.11.2', aliases: [], libraries: [] }));
      const answer = await registerRunner(deps, {
        name,
        zone: options.zone ?? 'default',
        capacity: options.capacity ?? 4,
        address: null,
        labels: {},
        languages,
      });
      return answer.runner_id;
    },
    async holder(jobId) {
      const row = await store.db.selectFrom('jobs').select('runner_id').where('id', '=', jobId).executeTakeFirst();
      return row?.runner_id ?? 'run_holds_nothing';
    },
    upload: async (jobId, attempt, text) =>
      uploadJobBlob(deps, await bed.holder(jobId), jobId, attempt, Readable.from([Buffer.from(text)])),
    async report(jobId, attempt, options = {}) {
      const { stdoutText, ...rest } = options;
      return {
        attempt,
        verdict: 'ok',
        exit_status: { code: 0, signal: null },
        resource_usage: { cpu_time_ms: 5, wall_time_ms: 7, memory_peak_bytes: 1024 },
        stdout: rest.stdout ?? (await bed.upload(jobId, attempt, stdoutText ?? `out of ${jobId}/${attempt}\n`)),
        stderr: rest.stderr ?? (await bed.upload(jobId, attempt, '')),
        artifacts: [],
        rejected_artifacts: [],
        error: null,
        ...rest,
      };
    },
    async reset() {
      await store.db.deleteFrom('artifacts').execute();
      await store.db.deleteFrom('blob_uploads').execute();
      await store.db.deleteFrom('tenant_storage').execute();
      await store.db.deleteFrom('sandbox_instances').execute();
      await store.db.deleteFrom('jobs').execute();
      await store.db.deleteFrom('runner_nodes').execute();
      await store.db.deleteFrom('job_secrets').execute();
    },
    async close() {
      deps.watchers.close();
      await deps.notifier.close();
      await deps.artifacts.close();
      await dropStore();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return bed;
}

/** A minimal valid job request. */
export function jobRequest(overrides: Partial<CreateJobRequest> = {}): CreateJobRequest {
  return { language: 'python', code: 'print(1)', ...overrides };
}

/**
 * Inserts a queued job row straight into the store (for store-level tests that need exact request times,
 * zones and caps without going through submitJob).
 */
export async function insertQueuedJob(
  store: Store,
  tenant: TestTenant,
  values: { requestedAtMs: number; language?: string; version?: string; zone?: string | null; maxRunningJobs?: number; maxAttempts?: number },
): Promise<JobRow> {
  const row = queuedJobRow(
    {
      tenant_id: tenant.tenantId,
      agent_id: null,
      policy_id: tenant.policyId,
      policy_version: 1,
      language: values.language ?? 'python',
      language_version: values.version ?? null,
      request: JSON.stringify({ language: values.language ?? 'python', version: values.version ?? null, code: 'print(1)' }),
      zone: values.zone ?? null,
      max_attempts: values.maxAttempts ?? 3,
      max_running_jobs: values.maxRunningJobs ?? 20,
    },
    values.requestedAtMs,
  );
  await store.db.insertInto('jobs').values(row).execute();
  return row;
}

/** Awaits `promise` and asserts it failed with a KilnError of `code`; answers the error. */
export async function expectKilnError(promise: Promise<unknown>, code: ErrorCode): Promise<KilnError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(KilnError);
  expect((err as KilnError).code).toBe(code);
  return err as KilnError;
}

/** Audit events of one action about one resource. */
export async function auditOf(store: Store, action: string, resourceId: string) {
  return store.db.selectFrom('audit_events').selectAll().where('action', '=', action).where('resource_id', '=', resourceId).execute();
}
