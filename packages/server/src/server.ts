import { join } from 'node:path';
import { systemClock, type Clock } from '@kiln/core';
import { createLogger, defaultLogFormat } from './log.js';
import { buildApp, type KilnApp } from './api/app.js';
import type { RouteSpec } from './api/route.js';
import { auditCheckpointFile, redactConfig, resolveAdminKey, resolveAuditKey, resolveSecretsKey, type ResolvedAdminKey, type ServerConfig } from './config.js';
import { preparePrivateDataDir, prepareSqliteFiles } from './data-dir.js';
import { auditKeyFrom } from './domain/audit-chain.js';
import { createJobPlane, type JobPlane } from './job-plane.js';
import { startAuditCheckpointer } from './services/audit-checkpoints.js';
import { fileCheckpointLog } from './store/audit-anchor.js';
import { openStore, storeOptionsFor, type Store } from './store/store.js';

export interface RunningServer {
  /** `http://host:port` it listens on */
  url: string;
  app: KilnApp;
  store: Store;
  adminKey: ResolvedAdminKey;
  /** Stops accepting, finishes in-flight requests, closes the database. Safe to call twice. */
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  extraRoutes?: RouteSpec[];
}

/** Opens the database (migrating it), builds the app and listens. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = createLogger({ level: config.logLevel, format: config.logFormat ?? defaultLogFormat(process.stdout) });
  preparePrivateDataDir(config.dataDir);
  const adminKey = resolveAdminKey(config);
  const auditKey = resolveAuditKey(config);
  const secretsKey = resolveSecretsKey(config);
  const sqliteFile = join(config.dataDir, 'kiln.db');
  if (!config.databaseUrl) prepareSqliteFiles(sqliteFile);
  const store = await openStore(storeOptionsFor({ databaseUrl: config.databaseUrl, sqliteFile }), {
    key: auditKeyFrom(auditKey.key),
    checkpoints: fileCheckpointLog(auditCheckpointFile(config)),
  });
  const clock = options.clock ?? systemClock;
  let app: KilnApp;
  let jobPlane: JobPlane | undefined;
  let stopCheckpointer: (() => Promise<void>) | undefined;
  try {
    jobPlane = await createJobPlane({
      store,
      clock,
      databaseUrl: config.databaseUrl,
      artifacts: { url: config.artifactsUrl, dataDir: config.dataDir, s3: config.s3 },
      secretsKey,
      fleet: {
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        leaseTtlMs: config.leaseTtlMs,
        degradedAfterMs: config.runnerDegradedAfterMs,
        offlineAfterMs: config.runnerOfflineAfterMs,
        maxAttempts: config.jobMaxAttempts,
        maxWaitMs: config.jobMaxWaitMs,
        maxRequestBytes: config.bodyLimitBytes,
      },
      streams: {
        liveOutputMaxBytesPerJob: config.liveOutputMaxBytesPerJob,
        maxPerJob: config.streamMaxWatchersPerJob,
        maxPerKey: config.streamMaxWatchersPerKey,
        maxPerTenant: config.streamMaxWatchersPerTenant,
        watcherBufferBytes: config.streamWatcherBufferBytes,
        stallTimeoutMs: config.streamStallTimeoutMs,
      },
      quotaDefaults: config.quotaDefaults,
      storage: {
        artifactRetentionSeconds: config.artifactRetentionSeconds,
        jobRetentionSeconds: config.jobRetentionSeconds,
      },
      services: { publicUrl: config.publicUrl, domain: config.servicesDomain, upstreamTimeoutMs: config.servicesUpstreamTimeoutMs, accessCacheMs: config.servicesAccessCacheMs },
      onError: (err) => logger.error({ err }, 'reaper pass failed'),
      compat: config.compat,
      warn: (fields, message) => logger.warn(fields, message),
    });
    app = await buildApp({
      store,
      adminKey: adminKey.key,
      runnerToken: config.runnerToken,
      bodyLimitBytes: config.bodyLimitBytes,
      quotaDefaults: config.quotaDefaults,
      http: config.http,
      authRefusals: config.authRefusals,
      logger,
      ...(options.clock ? { clock: options.clock } : {}),
      extraRoutes: [
        ...jobPlane.routes,
        ...(options.extraRoutes ?? []),
      ],
      notifier: jobPlane.deps.notifier,
    });
    jobPlane.install(app);
    await app.listen({ port: config.port, host: config.host });
    jobPlane.start();
    stopCheckpointer = startAuditCheckpointer({ store, clock }, config.auditCheckpointIntervalMs, {
      problem: (message) => logger.error({ checkpoints: store.audit.checkpoints.location }, message),
      error: (err) => logger.error({ err }, 'audit checkpoint pass failed'),
    });
  } catch (err) {
    await jobPlane?.close();
    await store.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  // Service URLs point where clients reach this server: the configured public URL, else where it listens.
  if (!config.publicUrl) jobPlane.hosting.publicUrl = `http://${host}:${port}`;
  logger.info(
    { config: redactConfig(config), database: store.dialect, audit_key: auditKey.file ?? 'KILN_AUDIT_KEY', audit_key_id: store.audit.key.id },
    'kiln control plane started',
  );
  if (auditKey.generated) {
    logger.warn(
      { audit_key: auditKey.file },
      'generated a new audit key: keep it with the audit checkpoint file, backed up apart from the database (or set KILN_AUDIT_KEY); without it the audit cannot be verified',
    );
  }
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    app,
    store,
    adminKey,
    close: () => {
      closing ??= (async () => {
        jobPlane.beginShutdown();
        await app.close();
        await jobPlane.close();
        await stopCheckpointer?.();
        await store.close();
      })();
      return closing;
    },
  };
}
