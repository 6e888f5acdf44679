import { join } from 'node:path';
import { systemClock, type Clock } from '@kiln/core';
import pino from 'pino';
import { buildApp, type KilnApp } from './api/app.js';
import type { RouteSpec } from './api/route.js';
import { redactConfig, resolveAdminKey, type ResolvedAdminKey, type ServerConfig } from './config.js';
import { createJobPlane, type JobPlane } from './job-plane.js';
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
  const logger = pino({ level: config.logLevel, redact: ['req.headers.authorization'] });
  const adminKey = resolveAdminKey(config);
  const store = await openStore(storeOptionsFor({ databaseUrl: config.databaseUrl, sqliteFile: join(config.dataDir, 'kiln.db') }));
  let app: KilnApp;
  let jobPlane: JobPlane | undefined;
  try {
    jobPlane = await createJobPlane({
      store,
      clock: options.clock ?? systemClock,
      databaseUrl: config.databaseUrl,
      artifacts: { url: config.artifactsUrl, dataDir: config.dataDir, s3: config.s3 },
      fleet: {
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        leaseTtlMs: config.leaseTtlMs,
        degradedAfterMs: config.runnerDegradedAfterMs,
        offlineAfterMs: config.runnerOfflineAfterMs,
        maxAttempts: config.jobMaxAttempts,
        maxWaitMs: config.jobMaxWaitMs,
      },
      onError: (err) => logger.error({ err }, 'fleet reaper pass failed'),
    });
    app = await buildApp({
      store,
      adminKey: adminKey.key,
      runnerToken: config.runnerToken,
      bodyLimitBytes: config.bodyLimitBytes,
      logger: { level: config.logLevel, redact: ['req.headers.authorization'] },
      ...(options.clock ? { clock: options.clock } : {}),
      extraRoutes: [...jobPlane.routes, ...(options.extraRoutes ?? [])],
      notifier: jobPlane.deps.notifier,
    });
    jobPlane.install(app);
    await app.listen({ port: config.port, host: config.host });
    jobPlane.start();
  } catch (err) {
    await jobPlane?.close();
    await store.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info({ config: redactConfig(config), database: store.dialect }, 'kiln control plane started');
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
        await store.close();
      })();
      return closing;
    },
  };
}
