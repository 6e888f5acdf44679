import { ERROR_CATALOGUE, isKilnError, KilnError, type ErrorCode } from '@kiln/core';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sourcePrefixOf } from '../domain/source-prefix.js';
import { auditRefusal } from '../services/audit.js';
import type { AuthRefusalTally } from '../services/auth-refusals.js';
import type { ServiceDeps } from '../services/context.js';
import { MUTATING_METHODS } from './route.js';

// Fastify's own request errors, mapped to the catalogue so clients see one error shape.
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_BAD_URL: 'NOT_FOUND',
  FST_ERR_ASYNC_CONSTRAINT: 'VALIDATION_FAILED',
};

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  431: 'HEADERS_TOO_LARGE',
  429: 'RATE_LIMITED',
  503: 'UNAVAILABLE',
};

function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** Any thrown value → a KilnError; `bug` is true when it was not an expected, client-caused error. */
export function toKilnError(err: unknown): { error: KilnError; bug: boolean } {
  if (isKilnError(err)) return { error: err, bug: err.status >= 500 };
  const fastifyError = err as Partial<FastifyError> & { status?: number };
  const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (mapped) return { error: new KilnError(mapped, fastifyError.message ?? mapped), bug: false };
  if (err instanceof SyntaxError && (fastifyError.statusCode === 400 || fastifyError.status === 400)) {
    return { error: new KilnError('MALFORMED_JSON', `the body is not valid JSON: ${err.message}`), bug: false };
  }
  // PostgreSQL's data exceptions (class 22: bad encoding, out of range…) are bad input that got past
  // the schemas: still the client's error, never a 500.
  const sqlState = (err as { code?: unknown })?.code;
  if (typeof sqlState === 'string' && /^22[0-9A-Z]{3}$/.test(sqlState)) {
    return { error: new KilnError('VALIDATION_FAILED', 'a value in the request cannot be stored'), bug: false };
  }
  if (isUniqueViolation(err)) {
    return { error: new KilnError('CONFLICT', 'a resource with these values exists already'), bug: false };
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = BY_STATUS[status] ?? 'VALIDATION_FAILED';
    return { error: new KilnError(code, fastifyError.message ?? code), bug: false };
  }
  return { error: new KilnError('INTERNAL', 'an internal error occurred; it was logged', { cause: err }), bug: true };
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, error: KilnError): FastifyReply {
  if (error.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  const retryAfter = error.extra?.retry_after;
  if (typeof retryAfter === 'number') reply.header('retry-after', String(Math.ceil(retryAfter)));
  return reply
    .code(error.status)
    .type('application/problem+json; charset=utf-8')
    .send(error.toProblem(request.url.split('?')[0]));
}

/** A 413 that names the limit of the route, so a client knows what to send. */
function bodyTooLarge(request: FastifyRequest): KilnError {
  const limit = request.routeOptions.bodyLimit;
  const mib = limit / (1024 * 1024);
  const shown = Number.isInteger(mib) ? `${mib} MiB` : `${limit} bytes`;
  return new KilnError('PAYLOAD_TOO_LARGE', `the body is over this route's limit of ${shown} (${limit} bytes); send less`, {
    field: 'body',
    extra: { limit_bytes: limit },
  });
}

/** Refusals of the key itself (missing, unknown, revoked, a disabled agent's): the caller holds no valid key. */
const KEY_REFUSALS = new Set(['UNAUTHORIZED', 'AGENT_DISABLED']);

/**
 * One error handler for the app: every error becomes problem+json, bugs are logged, and a refused
 * mutating call is written to the audit (in its own transaction: the change itself was rolled back).
 * A request refused for want of a valid key is only counted: the audit gets one event per source network
 * per window (AuthRefusalTally), so anonymous traffic cannot grow it without bound.
 */
export function installErrorHandling(app: FastifyInstance, deps: ServiceDeps, authRefusals: AuthRefusalTally): void {
  app.setErrorHandler(async (err, request, reply) => {
    let { error, bug } = toKilnError(err);
    if (error.code === 'PAYLOAD_TOO_LARGE' && !isKilnError(err)) error = bodyTooLarge(request);
    if (bug) request.log.error({ err }, 'request failed');
    else if (request.kilnPrincipal?.kind === 'runner') {
      // A runner's report refused (a stale attempt, a blob over the limits…): the operator should see it.
      const params = request.params as Record<string, unknown> | undefined;
      request.log.warn(
        { runner_id: request.kilnPrincipal.runnerId, route: request.routeOptions.url, job_id: params?.id, code: error.code, detail: error.message.slice(0, 300) },
        `runner report refused: ${error.code}`,
      );
    }
    const audit = request.routeOptions.config?.kilnAudit;
    if (request.kilnPrincipal === undefined && KEY_REFUSALS.has(error.code)) {
      authRefusals.record({
        source: sourcePrefixOf(request.ip),
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        code: error.code,
      });
    } else if (audit && MUTATING_METHODS.has(request.method) && request.kilnAuditRefusal !== false) {
      // A key hammering past its rate leaves one audit row per run of refusals, not one per request.
      const params = request.params as Record<string, unknown> | undefined;
      const resourceId = typeof params?.id === 'string' && params.id.length <= 128 ? params.id : null;
      try {
        await auditRefusal(deps, request.kilnPrincipal ?? { kind: 'anonymous' }, {
          action: audit.action,
          resource_type: audit.resourceType,
          resource_id: resourceId,
          status: error.status,
          code: error.code,
          // The detail of a JSON parse error quotes the body, which may hold a secret: leave it out.
          details:
            error.code === 'MALFORMED_JSON'
              ? { method: request.method }
              : { method: request.method, detail: error.message.slice(0, 300) },
        });
      } catch (auditErr) {
        request.log.error({ err: auditErr }, 'could not audit a refused call');
      }
    }
    return sendProblem(reply, request, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, request, new KilnError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}

const CLIENT_ERRORS: Record<string, { code: ErrorCode; detail: string }> = {
  HPE_HEADER_OVERFLOW: { code: 'HEADERS_TOO_LARGE', detail: 'the request headers are too large; send fewer or shorter headers' },
  ERR_HTTP_REQUEST_TIMEOUT: { code: 'REQUEST_TIMEOUT', detail: 'the request did not arrive in time; send it whole, promptly' },
  HPE_INVALID_METHOD: { code: 'METHOD_NOT_ALLOWED', detail: 'this HTTP method is not served; use GET, POST, PUT, PATCH or DELETE' },
};

/**
 * Node's parser refuses some requests before Fastify sees them (oversized headers, a method it does
 * not know): answer those with problem+json on the socket, as every other refusal, then close it.
 */
export function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  // A reset connection has no one to answer.
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const known = err.code ? CLIENT_ERRORS[err.code] : undefined;
  const error = new KilnError(known?.code ?? 'VALIDATION_FAILED', known?.detail ?? 'the request could not be parsed as HTTP/1.1');
  const body = JSON.stringify(error.toProblem());
  const allow = error.code === 'METHOD_NOT_ALLOWED' ? 'Allow: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT\r\n' : '';
  socket.end(
    `HTTP/1.1 ${error.status} ${ERROR_CATALOGUE[error.code].title}\r\nContent-Type: application/problem+json; charset=utf-8\r\n` +
      `${allow}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
