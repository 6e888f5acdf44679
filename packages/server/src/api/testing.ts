import { randomBytes } from 'node:crypto';
import { ManualClock } from '@kiln/core';
import type { LightMyRequestResponse } from 'fastify';
import { openTestStore, type TestStore } from '../store/testing.js';
import type { DbDialect } from '../store/store.js';
import { createJobPlane } from '../job-plane.js';
import type { StorageSettings } from '../services/artifact-storage.js';
import type { FleetSettings, JobDeps, StreamSettings } from '../services/job-deps.js';
import type { LossWarning } from '../services/live-output.js';
import { buildApp, type AppDeps, type KilnApp } from './app.js';

export const TEST_ADMIN_KEY = 'kiln_operator_test_admin_key_0123456789';
export const TEST_RUNNER_TOKEN = 'kiln_runner_test_token_0123456789';

/** An app on a fresh store of either kind, with helpers that speak JSON and carry a key. */
export interface TestApp {
  app: KilnApp;
  db: TestStore;
  clock: ManualClock;
  /** The job plane's dependencies, when the app serves jobs. */
  jobDeps: JobDeps | undefined;
  call(method: string, url: string, key?: string, body?: unknown): Promise<LightMyRequestResponse & { json(): any }>;
  close(): Promise<void>;
}

export interface TestAppOptions extends Partial<AppDeps> {
  /** Also serve the job, runner and fleet routes, with artifacts in this folder. */
  jobs?: {
    artifactsDir: string;
    fleet?: Partial<FleetSettings>;
    storage?: Partial<StorageSettings>;
    streams?: Partial<StreamSettings>;
    warn?: LossWarning;
  };
  /** Sees the SQL of every statement the store runs. */
  onQuery?: (sql: string, parameters: readonly unknown[]) => void;
}

export async function openTestApp(kind: DbDialect, options: TestAppOptions = {}): Promise<TestApp> {
  const { jobs, onQuery, ...appOptions } = options;
  const db = await openTestStore(kind, undefined, onQuery);
  const clock = new ManualClock();
  const plane = jobs
    ? await createJobPlane({
        store: db.store,
        clock,
        databaseUrl: undefined,
        artifacts: { dataDir: jobs.artifactsDir },
        fleet: { maxRequestBytes: appOptions.bodyLimitBytes ?? 1024 * 1024, ...jobs.fleet },
        secretsKey: randomBytes(32),
        storage: jobs.storage ?? {},
        streams: jobs.streams ?? {},
        onError: () => {},
        ...(jobs.warn ? { warn: jobs.warn } : {}),
      })
    : undefined;
  const app = await buildApp({
    store: db.store,
    adminKey: TEST_ADMIN_KEY,
    runnerToken: TEST_RUNNER_TOKEN,
    clock,
    ...appOptions,
    extraRoutes: [...(plane?.routes ?? []), ...(appOptions.extraRoutes ?? [])],
    notifier: plane?.deps.notifier,
  });
  plane?.install(app);
  return {
    app,
    db,
    clock,
    jobDeps: plane?.deps,
    call: (method, url, key, body) =>
      app.inject({
        method: method as 'GET',
        url,
        headers: key ? { authorization: `Bearer ${key}` } : {},
        ...(body === undefined ? {} : { payload: body as object }),
      }),
    close: async () => {
      plane?.beginShutdown();
      await app.close();
      await plane?.close();
      await db.cleanup();
    },
  };
}

/** The operator makes a tenant and its admin key; the tenant admin makes an agent and its key. */
export async function seedTenant(t: TestApp, name = 'acme') {
  const tenant = (await t.call('POST', '/v1/tenants', TEST_ADMIN_KEY, { name })).json();
  const tenantKey = (await t.call('POST', `/v1/tenants/${tenant.id}/keys`, TEST_ADMIN_KEY)).json();
  const agent = (await t.call('POST', '/v1/agents', tenantKey.key, { name: `${name}-bot` })).json();
  const agentKey = (await t.call('POST', `/v1/agents/${agent.id}/keys`, tenantKey.key)).json();
  return { tenant, tenantKey: tenantKey.key as string, tenantKeyId: tenantKey.id as string, agent, agentKey: agentKey.key as string, agentKeyId: agentKey.id as string };
}

/**
 * Registers a runner offering python that never polls: jobs can be submitted (a runner offers the
 * language) and stay queued.
 */
export async function registerIdleRunner(t: TestApp, name = 'idle') {
  const registered = await t.call('POST', '/v1/runner/register', TEST_RUNNER_TOKEN, {
    name, zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3.11.2' }],
  });
  if (registered.statusCode !== 200) throw new Error(`runner registration failed: ${registered.body}`);
  return registered.json();
}
