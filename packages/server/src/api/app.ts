import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { KilnError, systemClock, type Clock, type TenantQuota } from '@kiln/core';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { HttpLimits } from '../config.js';
import type { AuthSecrets } from '../services/auth.js';
import { AuthRefusalTally, type AuthRefusalLimits } from '../services/auth-refusals.js';
import type { ServiceDeps } from '../services/context.js';
import { KeyRateLimiter } from '../services/key-rate-limit.js';
import type { Notifier } from '../services/notifier.js';
import type { Store } from '../store/store.js';
import { limitConnections, timeoutOptions } from './connection-limits.js';
import { answerClientError, installErrorHandling, sendProblem } from './errors.js';
import { parseJsonBodies } from './json-body.js';
import { createHttpMetrics, instrument, type HttpMetrics } from './metrics.js';
import { buildOpenApiDocument } from './openapi.js';
import { operatorRoutes } from './operator-routes.js';
import { opsRoutes } from './ops-routes.js';
import { registerRoutes, type RouteSpec } from './route.js';
import { tenantRoutes } from './tenant-routes.js';
import { whoamiRoutes } from './whoami-route.js';
import { serveDashboard } from './dashboard-static.js';

function isLoggerInstance(logger: AppDeps['logger']): logger is FastifyBaseLogger {
  return typeof (logger as { child?: unknown } | undefined)?.child === 'function';
}

/** What `buildApp` needs. Everything else is derived. */
export interface AppDeps {
  store: Store;
  /** the operator key */
  adminKey: string;
  /** the runner token; runners are refused when unset */
  runnerToken?: string | undefined;
  /** @default systemClock */
  clock?: Clock;
  /** @default 1048576 */
  bodyLimitBytes?: number;
  /** Fastify's logger option, or the process's pino logger itself; @default false */
  logger?: FastifyServerOptions['logger'] | FastifyBaseLogger;
  /** A tenant's quota where the operator set nothing (KILN_QUOTA_*). @default DEFAULT_TENANT_QUOTA */
  quotaDefaults?: TenantQuota;
  /** Routes of later issues (jobs, runner protocol…), registered like the built-in ones. */
  extraRoutes?: RouteSpec[];
  /** Timeouts and connection caps of the listening server; without, Node's and Fastify's defaults. */
  http?: HttpLimits;
  /** How refusals without a valid key are audited. @default one event per source per minute, 10,000 sources */
  authRefusals?: AuthRefusalLimits;
  /** The job plane's wake-ups, so suspending a tenant or disabling an agent reaches its runners at once. */
  notifier?: Notifier;
  /** The dashboard's built files (served at /ui); @default packages/dashboard/dist beside this package */
  dashboardDir?: string;
}

export interface KilnApp extends FastifyInstance {
  kiln: { deps: ServiceDeps; metrics: HttpMetrics; openapi: Record<string, unknown>; authRefusals: AuthRefusalTally; secrets: AuthSecrets };
}

/**
 * The control-plane HTTP app (not listening: use `app.inject()` in tests, `startServer` for real).
 * Audiences are separate route modules: operator, tenant, operations (runner and proxy come later).
 */
export async function buildApp(deps: AppDeps): Promise<KilnApp> {
  const serviceDeps: ServiceDeps = {
    store: deps.store,
    clock: deps.clock ?? systemClock,
    notifier: deps.notifier,
    ...(deps.quotaDefaults ? { quotaDefaults: deps.quotaDefaults } : {}),
  };
  const secrets: AuthSecrets = { adminKey: deps.adminKey, runnerToken: deps.runnerToken };
  const app = Fastify({
    ...(isLoggerInstance(deps.logger) ? { loggerInstance: deps.logger } : { logger: deps.logger ?? false }),
    // Runners heartbeat every second; a line per request would drown the log. /metrics counts requests.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    ...(deps.http ? timeoutOptions(deps.http) : {}),
    // Ids and other strings may be long; keep Fastify from answering 414 on its own terms.
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    // Errors Fastify raises before routing (bad URL encoding, over-long ids) get the same problem+json.
    // Refusals before a request exists (oversized headers: 431, a method Node cannot parse) are problem+json too.
    clientErrorHandler: answerClientError,
    frameworkErrors: (error, request, reply) => {
      const code = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'NOT_FOUND' : 'VALIDATION_FAILED';
      void sendProblem(reply, request, new KilnError(code, error.message));
    },
  });
  const metrics = createHttpMetrics();
  instrument(app, metrics);
  if (deps.http) limitConnections(app.server, deps.http, metrics.registry);
  const authRefusals = new AuthRefusalTally(serviceDeps, deps.authRefusals ?? { windowMs: 60_000, maxSources: 10_000 }, metrics.registry);
  const stopAuthRefusals = authRefusals.start((err) => app.log.error({ err }, 'could not audit refused requests'));
  app.addHook('onClose', stopAuthRefusals);
  installErrorHandling(app, serviceDeps, authRefusals);
  parseJsonBodies(app);

  const specs = [...opsRoutes(metrics), ...operatorRoutes, ...tenantRoutes, ...whoamiRoutes, ...(deps.extraRoutes ?? [])];
  const openapi = buildOpenApiDocument(specs, '0.1.0');
  await app.register(swagger, { mode: 'static', specification: { document: openapi as never } });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', async () => openapi);
  await serveDashboard(app, deps.dashboardDir);
  registerRoutes(app, serviceDeps, secrets, specs, new KeyRateLimiter(serviceDeps));

  const kilnApp = app as unknown as KilnApp;
  kilnApp.kiln = { deps: serviceDeps, metrics, openapi, authRefusals, secrets };
  return kilnApp;
}
