/**
 * The kiln control plane: HTTP API, auth, audit and the database. Later issues (jobs, runner protocol,
 * sessions…) build on the store, the services and `buildApp`'s `extraRoutes`.
 */
export { buildApp, type AppDeps, type KilnApp } from './api/app.js';
export { defineRoute, idParams, registerRoutes, type RouteAuth, type RouteContext, type RouteSpec } from './api/route.js';
export { toKilnError, sendProblem } from './api/errors.js';
export { buildOpenApiDocument } from './api/openapi.js';
export { startServer, type RunningServer, type StartOptions } from './server.js';
export { createLogger, defaultLogFormat, type LogFormat } from './log.js';
export {
  adminKeyFile,
  loadServerConfig,
  redactConfig,
  resolveAdminKey,
  serverEnvSchema,
  type ResolvedAdminKey,
  type ServerConfig,
} from './config.js';
export * from './store/index.js';
export * from './services/index.js';
export * from './domain/machines.js';
export * from './domain/state-machine.js';
export * from './domain/audit-chain.js';
export * from './domain/keys.js';
