import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { KilnError, systemClock, type Clock } from '@kiln/core';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { AuthSecrets } from '../services/auth.js';
import type { ServiceDeps } from '../services/context.js';
import type { Notifier } from '../services/notifier.js';
import type { Store } from '../store/store.js';
import { installErrorHandling, sendProblem } from './errors.js';
import { createHttpMetrics, instrument, type HttpMetrics } from './metrics.js';
import { buildOpenApiDocument } from './openapi.js';
import { operatorRoutes } from './operator-routes.js';
import { opsRoutes } from './ops-routes.js';
import { registerRoutes, type RouteSpec } from './route.js';
import { tenantRoutes } from './tenant-routes.js';

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
  /** Fastify's logger option (pino); @default false */
  logger?: FastifyServerOptions['logger'];
  /** Routes of later issues (jobs, runner protocol…), registered like the built-in ones. */
  extraRoutes?: RouteSpec[];
  /** The job plane's wake-ups, so suspending a tenant or disabling an agent reaches its runners at once. */
  notifier?: Notifier;
}

export interface KilnApp extends FastifyInstance {
  kiln: { deps: ServiceDeps; metrics: HttpMetrics; openapi: Record<string, unknown> };
}

/**
 * The control-plane HTTP app (not listening: use `app.inject()` in tests, `startServer` for real).
 * Audiences are separate route modules: operator, tenant, operations (runner and proxy come later).
 */
export async function buildApp(deps: AppDeps): Promise<KilnApp> {
  const serviceDeps: ServiceDeps = { store: deps.store, clock: deps.clock ?? systemClock, notifier: deps.notifier };
  const secrets: AuthSecrets = { adminKey: deps.adminKey, runnerToken: deps.runnerToken };
  const app = Fastify({
    logger: deps.logger ?? false,
    // Runners heartbeat every second; a line per request would drown the log. /metrics counts requests.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    // Ids and other strings may be long; keep Fastify from answering 414 on its own terms.
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    // Errors Fastify raises before routing (bad URL encoding, over-long ids) get the same problem+json.
    frameworkErrors: (error, request, reply) => {
      const code = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'NOT_FOUND' : 'VALIDATION_FAILED';
      void sendProblem(reply, request, new KilnError(code, error.message));
    },
  });
  const metrics = createHttpMetrics();
  instrument(app, metrics);
  installErrorHandling(app, serviceDeps);

  const specs = [...opsRoutes(metrics), ...operatorRoutes, ...tenantRoutes, ...(deps.extraRoutes ?? [])];
  const openapi = buildOpenApiDocument(specs, '0.1.0');
  await app.register(swagger, { mode: 'static', specification: { document: openapi as never } });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', async () => openapi);
  registerRoutes(app, serviceDeps, secrets, specs);

  const kilnApp = app as unknown as KilnApp;
  kilnApp.kiln = { deps: serviceDeps, metrics, openapi };
  return kilnApp;
}
