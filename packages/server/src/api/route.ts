import { KilnError, parseOrThrow, type ErrorCode } from '@kiln/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { authenticate, type AuthSecrets } from '../services/auth.js';
import type { Principal, ServiceDeps } from '../services/context.js';
import type { KeyRateLimiter } from '../services/key-rate-limit.js';

/**
 * Who may call a route: `public` needs no key; `key` takes operator, tenant and agent keys (each
 * service then checks the role); `runner` takes only a runner's own credential; `runner_join` (registration)
 * takes the fleet's join token or a runner credential; `any` takes every key.
 */
export type RouteAuth = 'public' | 'key' | 'runner' | 'runner_join' | 'any';

type Infer<T> = T extends z.ZodType ? z.infer<T> : undefined;

export interface RouteContext<P, Q, B> {
  principal: Principal;
  deps: ServiceDeps;
  params: P;
  query: Q;
  body: B;
  request: FastifyRequest;
  reply: FastifyReply;
}

/**
 * One API route: its HTTP face, the zod schemas it validates with (also the source of the OpenAPI
 * document), and a thin handler that calls a service.
 */
export interface RouteSpec<
  P extends z.ZodType | undefined = z.ZodType | undefined,
  Q extends z.ZodType | undefined = z.ZodType | undefined,
  B extends z.ZodType | undefined = z.ZodType | undefined,
> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Fastify path syntax: `/v1/tenants/:id` */
  url: string;
  summary: string;
  tag: string;
  auth: RouteAuth;
  /** For mutating routes: what a refused call is recorded as in the audit. */
  audit?: { action: string; resourceType: string };
  params?: P;
  query?: Q;
  body?: B;
  /** When the body may be left out entirely (e.g. key creation), it is parsed as `{}`. */
  bodyOptional?: boolean;
  response?: z.ZodType;
  /** @default 200 */
  successStatus?: number;
  /** What the handler answers itself (metrics text, HTML): skip the JSON response. */
  raw?: boolean;
  /** The OpenAPI operationId; @default derived from method and path (`createJob`, `listAgentKeys`) */
  operationId?: string;
  /**
   * Error codes this route answers beyond those every route of its kind gets (400 for bad input, 401/403
   * for keyed routes, 404 for routes of one resource, 413/415 for JSON bodies, 429 for keyed mutations).
   */
  errors?: ErrorCode[];
  /** Body limit of this route when it differs from the app's (a job's code and files). */
  bodyLimitBytes?: number;
  /** What a raw route answers (its media type and headers), for the OpenAPI document. */
  responseMedia?: { type: string; schema?: Record<string, unknown>; description?: string };
  /** Response headers of the success answer, for the OpenAPI document. */
  responseHeaders?: Record<string, { description: string; schema?: Record<string, unknown> }>;
  /** A raw request body (not JSON: a blob upload), for the OpenAPI document. */
  rawBody?: { type: string; description: string };
  /** Other success answers (`202` of a wait that timed out), for the OpenAPI document. */
  otherResponses?: Record<string, { description: string; headers?: Record<string, { description: string; schema: Record<string, unknown> }> }>;
  /** An example request body, for the OpenAPI document. */
  bodyExample?: unknown;
  handler: (ctx: RouteContext<Infer<P>, Infer<Q>, Infer<B>>) => Promise<unknown>;
}

/** Keeps the schemas' types flowing into the handler. */
export function defineRoute<
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(spec: RouteSpec<P, Q, B>): RouteSpec {
  return spec as unknown as RouteSpec;
}

/** Path parameter `{id}` of most routes. */
export const idParams = z.strictObject({
  id: z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/, 'must be an id such as "agt_01hx…"'),
});

declare module 'fastify' {
  interface FastifyRequest {
    /** who is calling, once authenticated (the error handler uses it to audit refusals) */
    kilnPrincipal?: Principal;
    /** false when a refusal is not worth an audit row of its own (a repeated rate-limit refusal) */
    kilnAuditRefusal?: boolean;
  }
  interface FastifyContextConfig {
    kilnAudit?: { action: string; resourceType: string };
  }
}

/** Methods that change something: rate-limited per key, and audited when refused. */
export const MUTATING_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Registers specs on a Fastify instance: authenticate, limit the key's rate of mutating calls,
 * validate, call, answer.
 */
export function registerRoutes(
  app: FastifyInstance,
  deps: ServiceDeps,
  secrets: AuthSecrets,
  specs: RouteSpec[],
  limiter?: KeyRateLimiter,
): void {
  for (const spec of specs) {
    app.route({
      method: spec.method,
      url: spec.url,
      config: spec.audit ? { kilnAudit: spec.audit } : {},
      ...(spec.bodyLimitBytes !== undefined ? { bodyLimit: spec.bodyLimitBytes } : {}),
      handler: async (request, reply) => {
        if (spec.body) requireJsonBody(request);
        let principal: Principal = { kind: 'anonymous' };
        if (spec.auth !== 'public') {
          principal = await authenticate(deps, secrets, request.headers.authorization);
          request.kilnPrincipal = principal;
          const isRunner = principal.kind === 'runner' || principal.kind === 'runner_join';
          if (spec.auth === 'key' && isRunner) {
            throw new KilnError('FORBIDDEN', 'runner tokens and credentials open only /v1/runner/*');
          }
          if (spec.auth === 'runner_join' && !isRunner) {
            throw new KilnError('FORBIDDEN', 'only runners (with the join token or their credential) may register');
          }
          if (spec.auth === 'runner' && principal.kind !== 'runner') {
            throw new KilnError(
              'FORBIDDEN',
              principal.kind === 'runner_join'
                ? 'the join token only registers (POST /v1/runner/register); send the runner credential it issued'
                : 'only runners (with their credential) may call /v1/runner/*',
            );
          }
          if (limiter && MUTATING_METHODS.has(spec.method)) {
            const refusal = await limiter.admit(principal);
            if (refusal) {
              request.kilnAuditRefusal = refusal.audit;
              throw refusal.error;
            }
          }
        }
        const params = spec.params ? parseOrThrow(spec.params, request.params, 'params') : undefined;
        const query = spec.query ? parseOrThrow(spec.query, request.query ?? {}, 'query') : undefined;
        let body: unknown;
        if (spec.body) {
          const raw = request.body === undefined && spec.bodyOptional ? {} : request.body;
          body = parseOrThrow(spec.body, raw, 'body');
        }
        const result = await spec.handler({ principal, deps, params, query, body, request, reply } as never);
        if (spec.raw) return reply;
        // A handler that chose its own status (202 of a wait that timed out) keeps it.
        if (reply.statusCode === 200) reply.code(spec.successStatus ?? 200);
        return result;
      },
    });
  }
  answerWrongMethods(app, specs);
}

/** Every method Fastify routes; those a path does not serve answer 405 with `Allow`. */
const ROUTABLE_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

/** The methods of each path, `HEAD` with `GET` (Fastify answers HEAD for every GET route). */
function allowedMethods(specs: RouteSpec[]): Map<string, string[]> {
  const byUrl = new Map<string, Set<string>>();
  for (const spec of specs) {
    const methods = byUrl.get(spec.url) ?? new Set<string>();
    methods.add(spec.method);
    if (spec.method === 'GET') methods.add('HEAD');
    byUrl.set(spec.url, methods);
  }
  return new Map([...byUrl].map(([url, methods]) => [url, [...methods].sort()]));
}

function answerWrongMethods(app: FastifyInstance, specs: RouteSpec[]): void {
  // Methods no route serves (QUERY, PROPFIND…) are refused before Fastify looks for a body parser.
  app.addHook('onRequest', async (request, reply) => {
    if ((ROUTABLE_METHODS as readonly string[]).includes(request.method)) return;
    reply.header('allow', ROUTABLE_METHODS.join(', '));
    throw new KilnError('METHOD_NOT_ALLOWED', `${request.method.slice(0, 32)} is not served; use ${ROUTABLE_METHODS.join(', ')}`);
  });
  for (const [url, allowed] of allowedMethods(specs)) {
    const others = ROUTABLE_METHODS.filter((m) => !allowed.includes(m));
    app.route({
      method: others,
      url,
      handler: async (request, reply) => {
        reply.header('allow', allowed.join(', '));
        throw new KilnError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${url.replace(/:([A-Za-z_]+)/g, '{$1}')}; use ${allowed.join(', ')}`);
      },
    });
  }
}

/**
 * A JSON route takes `application/json` (or `+json`) only: Fastify would otherwise hand it a text/plain
 * body as a string, refused with a confusing schema error instead of 415.
 */
function requireJsonBody(request: FastifyRequest): void {
  const type = request.headers['content-type'];
  if (type === undefined) return;
  const media = type.split(';')[0]!.trim().toLowerCase();
  if (media === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(media)) return;
  throw new KilnError('UNSUPPORTED_MEDIA_TYPE', `the body must be application/json, not ${JSON.stringify(media.slice(0, 100))}`, {
    field: 'headers.content-type',
  });
}

const REQUEST_ENDED = new Error('the request ended');

/**
 * Aborts when the client goes away or the control plane shuts down, so a long poll (lease, heartbeat,
 * `wait`) stops waiting for a caller that left and never outlives the server.
 */
export function pollSignal(deps: { shutdown: AbortSignal }, request: FastifyRequest): AbortSignal {
  const poll = new AbortController();
  // A shared reason: `abort()` without one builds a DOMException and its stack for every request.
  const abort = () => poll.abort(REQUEST_ENDED);
  if (deps.shutdown.aborted) abort();
  deps.shutdown.addEventListener('abort', abort, { once: true });
  // 'close' comes when the request ends, answered or not: the shutdown listener goes with it.
  request.raw.once('close', () => {
    deps.shutdown.removeEventListener('abort', abort);
    abort();
  });
  return poll.signal;
}
