import { PlaneEvents } from './services/plane-events.js';
import { setMaxListeners } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { Clock, TenantQuota } from '@kiln/core';
import { createArtifactStore, type ArtifactStoreConfig } from './artifacts/index.js';
import type { KilnApp } from './api/app.js';
import { registerFleetMetrics } from './api/fleet-metrics.js';
import { registerStreamMetrics } from './api/stream-metrics.js';
import { registerJobMetrics } from './api/job-metrics.js';
import { logPlaneEvents } from './api/plane-log.js';
import { fleetRoutes } from './api/fleet-routes.js';
import { jobRoutes } from './api/job-routes.js';
import { compatRoutes, DEFAULT_COMPAT_CONFIG } from './api/compat/index.js';
import { jobStdinRoutes } from './api/job-stdin/job-stdin-routes.js';
import { installPistonConnect } from './api/compat/piston/piston-connect.js';
import { PISTON_PREFIX } from './api/compat/piston/piston-routes.js';
import { acceptCompatBodies } from './api/compat/compat-errors.js';
import type { CompatConfig } from './config.js';
import { dispatchJudge0Callbacks } from './services/compat/judge0/callback-dispatch.js';
import { workflowRoutes } from './api/workflow-routes.js';
import { acceptRawUploads, runnerRoutes } from './api/runner-routes.js';
import { sessionRoutes } from './api/session-routes.js';
import { installSessionPty } from './api/session-pty.js';
import { installMcpEndpoint } from './api/mcp/mcp-endpoint.js';
import { serviceRoutes } from './api/service-routes.js';
import { installServiceProxy } from './api/service-proxy.js';
import { ServiceHosting, type ServiceHostingSettings } from './services/hosted-services/hosting.js';
import { startServiceReconciler } from './services/hosted-services/reconciler.js';
import { startSessionReaper } from './services/sessions/reaper.js';
import { StepEvents } from './services/sessions/steps.js';
import type { RouteSpec } from './api/route.js';
import { DEFAULT_STORAGE_SETTINGS, type StorageSettings } from './services/artifact-storage.js';
import { startFleetReaper } from './services/fleet.js';
import { startRetentionReaper } from './services/retention.js';
import { startWorkflowSweeper } from './services/workflows/sweeper.js';
import { DEFAULT_FLEET_SETTINGS, DEFAULT_STREAM_SETTINGS, type FleetSettings, type JobDeps, type StreamSettings } from './services/job-deps.js';
import { JobWatchHub } from './services/job-watchers.js';
import { LiveOutput, type LossWarning } from './services/live-output.js';
import { createNotifier } from './services/notifier.js';
import type { Store } from './store/store.js';

export interface JobPlaneOptions {
  store: Store;
  clock: Clock;
  databaseUrl: string | undefined;
  artifacts: ArtifactStoreConfig;
  fleet?: Partial<FleetSettings>;
  /** @default DEFAULT_TENANT_QUOTA */
  quotaDefaults?: TenantQuota;
  /** Seals jobs' `secret_env` at rest (KILN_SECRETS_KEY or `<data dir>/secrets.key`). */
  secretsKey?: Buffer | undefined;
  storage?: Partial<StorageSettings>;
  streams?: Partial<StreamSettings>;
  onError: (err: unknown) => void;
  /** How often the session reaper looks for expired and idle sessions. @default 1000 */
  sessionReaperIntervalMs?: number;
  /** Where warnings about lost live output go. @default nowhere */
  warn?: LossWarning;
  /** Service URLs and proxy bounds (KILN_PUBLIC_URL, KILN_SERVICES_DOMAIN, …). */
  services?: ServiceHostingSettings;
  /** How often the service reconciler asks runners how their services are. @default 500 */
  serviceReconcilerIntervalMs?: number;
  /** The Piston and Judge0 faces. @default DEFAULT_COMPAT_CONFIG */
  compat?: CompatConfig;
}

/** Jobs on a runner fleet: their dependencies, routes and background reaper, started and stopped together. */
export interface JobPlane {
  deps: JobDeps;
  /** Where service URLs point; `publicUrl` is set from the listening address when not configured. */
  hosting: ServiceHosting;
  routes: RouteSpec[];
  /** What the app needs besides the routes (raw blob uploads). Call before the app is ready. */
  install(app: FastifyInstance): void;
  /** Starts the fleet reaper, the retention sweeper and the workflow sweeper. */
  start(): void;
  /** Ends every long poll and event stream at once (before the HTTP server closes). */
  beginShutdown(): void;
  close(): Promise<void>;
}

/** How often the workflow sweeper looks for advances left undone. */
const WORKFLOW_SWEEP_INTERVAL_MS = 1000;

export async function createJobPlane(options: JobPlaneOptions): Promise<JobPlane> {
  const notifier = await createNotifier(
    options.databaseUrl ? { kind: 'postgres', url: options.databaseUrl } : { kind: 'sqlite' },
  );
  const fleet = { ...DEFAULT_FLEET_SETTINGS, ...options.fleet };
  const streams = { ...DEFAULT_STREAM_SETTINGS, ...options.streams };
  const shutdown = new AbortController();
  // Every open long poll and event stream listens for shutdown: many at once is normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  const deps: JobDeps = {
    store: options.store,
    clock: options.clock,
    ...(options.quotaDefaults ? { quotaDefaults: options.quotaDefaults } : {}),
    notifier,
    artifacts: createArtifactStore(options.artifacts),
    fleet,
    storage: { ...DEFAULT_STORAGE_SETTINGS, ...options.storage },
    liveOutput: new LiveOutput({ maxBytesPerJob: streams.liveOutputMaxBytesPerJob, ...(options.warn ? { warn: options.warn } : {}) }),
    streams,
    watchers: new JobWatchHub({ store: options.store, notifier }, streams),
    shutdown: shutdown.signal,
    secretsKey: options.secretsKey,
    events: new PlaneEvents(),
  };
  let stopReaper: (() => Promise<void>) | undefined;
  let stopRetention: (() => Promise<void>) | undefined;
  let stopWorkflows: (() => Promise<void>) | undefined;
  let stopSessionReaper: (() => Promise<void>) | undefined;
  let stopServiceReconciler: (() => Promise<void>) | undefined;
  const stepEvents = new StepEvents();
  const hosting = new ServiceHosting(options.services);
  dispatchJudge0Callbacks(deps, options.onError);
  return {
    deps,
    hosting,
    routes: [
      ...jobRoutes(deps),
      ...jobStdinRoutes(deps),
      ...workflowRoutes(deps),
      ...runnerRoutes(deps),
      ...fleetRoutes(deps),
      ...sessionRoutes(deps, stepEvents),
      ...serviceRoutes(deps, hosting),
      ...compatRoutes(deps, options.compat ?? DEFAULT_COMPAT_CONFIG),
    ],
    install: (app) => {
      acceptRawUploads(app);
      installSessionPty(app as KilnApp, deps, stepEvents);
      installMcpEndpoint(app as KilnApp, '0.1.0', hosting);
      installServiceProxy(app as KilnApp, deps, hosting);
      const compat = options.compat ?? DEFAULT_COMPAT_CONFIG;
      installPistonConnect(app as KilnApp, deps, compat.pistonAgentId);
      acceptCompatBodies(app, [PISTON_PREFIX, compat.judge0Prefix]);
      registerFleetMetrics((app as KilnApp).kiln.metrics.registry, deps);
      registerStreamMetrics((app as KilnApp).kiln.metrics.registry, deps);
      registerJobMetrics((app as KilnApp).kiln.metrics.registry, deps.events);
      logPlaneEvents(app.log, deps.events);
    },
    start: () => {
      // The reaper looks often enough to notice a missed heartbeat within about one interval.
      stopReaper = startFleetReaper(deps, Math.max(250, Math.floor(fleet.heartbeatIntervalMs / 2)), options.onError);
      stopRetention = startRetentionReaper(deps, deps.storage.retentionIntervalMs, options.onError);
      // Workflows a crash or an unhooked job end left behind are finished within about a second.
      stopWorkflows = startWorkflowSweeper(deps, WORKFLOW_SWEEP_INTERVAL_MS, options.onError);
      stopSessionReaper = startSessionReaper(deps, options.sessionReaperIntervalMs ?? 1000, options.onError);
      stopServiceReconciler = startServiceReconciler(deps, options.serviceReconcilerIntervalMs ?? 500, options.onError);
    },
    beginShutdown: () => shutdown.abort(),
    close: async () => {
      shutdown.abort();
      deps.watchers.close();
      await stopReaper?.();
      await stopRetention?.();
      await stopWorkflows?.();
      await stopSessionReaper?.();
      await stopServiceReconciler?.();
      await notifier.close();
      await deps.artifacts.close();
    },
  };
}
