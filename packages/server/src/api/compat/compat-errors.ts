import { isKilnError, KilnError } from '@kiln/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseJsonBody } from '../json-body.js';
import { toKilnError } from '../errors.js';
import { MUTATING_METHODS } from '../route.js';
import { sourcePrefixOf } from '../../domain/source-prefix.js';
import { auditRefusal } from '../../services/audit.js';
import type { KilnApp } from '../app.js';
import type { AuthSecrets } from '../../services/auth.js';

/**
 * A compatibility face answers errors in its peer's own shape (Piston: `{"message"}`, Judge0:
 * `{"error"}` or per-field lists), with kiln's status codes; bugs are logged, never detailed.
 */
export function compatFailure(request: FastifyRequest, err: unknown): KilnError {
  const { error, bug } = toKilnError(err);
  if (bug) request.log.error({ err }, 'compatibility request failed');
  const answered = bug ? new KilnError('INTERNAL', 'internal error') : error;
  recordCompatRefusal(request, answered.status, answered.code, answered.message);
  return answered;
}

/**
 * A refused mutating call is audited as on `/v1` (the route's `audit` action, the caller as actor);
 * one without a valid key is counted per source network, like every unauthenticated refusal.
 */
export function recordCompatRefusal(request: FastifyRequest, status: number, code: string, detail: string): void {
  const audit = request.routeOptions.config?.kilnAudit;
  if (!audit || !MUTATING_METHODS.has(request.method)) return;
  const app = request.server as unknown as KilnApp;
  if (request.kilnPrincipal === undefined) {
    if (status === 401 || status === 403) {
      app.kiln.authRefusals.record({ source: sourcePrefixOf(request.ip), method: request.method, route: request.routeOptions.url ?? 'unmatched', code });
    }
    return;
  }
  void auditRefusal(app.kiln.deps, request.kilnPrincipal, {
    action: audit.action,
    resource_type: audit.resourceType,
    resource_id: null,
    status,
    code,
    details: { method: request.method, detail: detail.slice(0, 300) },
  }).catch((err: unknown) => request.log.error({ err }, 'could not audit a refused call'));
}

/**
 * Bodies of any content type reach the compatibility faces as bytes (`curl -d` sends form encoding,
 * node-fetch `text/plain`); elsewhere an unknown type stays 415, as before.
 */
export function acceptCompatBodies(app: FastifyInstance, prefixes: readonly string[]): void {
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    const path = request.url.split('?')[0]!;
    if (prefixes.some((p) => path.startsWith(`${p}/`))) return done(null, body);
    done(new KilnError('UNSUPPORTED_MEDIA_TYPE', `the body must be application/json, not ${JSON.stringify(String(request.headers['content-type']).slice(0, 100))}`), undefined);
  });
}

/**
 * The body of a compatibility request as JSON, whatever its content type says: Piston's and Judge0's
 * clients send JSON as `text/plain` or with no type at all (node-fetch's default for a string body).
 */
export function compatJsonBody(request: FastifyRequest): unknown {
  const body = request.body;
  if (body === undefined || body === null) return {};
  if (Buffer.isBuffer(body)) return body.length === 0 ? {} : parseJsonBody(body);
  if (typeof body === 'string') return body.trim() === '' ? {} : parseJsonBody(Buffer.from(body, 'utf8'));
  return body;
}

/** The control plane's secrets, from the app that received the request. */
export function secretsOf(request: FastifyRequest): AuthSecrets {
  return (request.server as unknown as KilnApp).kiln.secrets;
}

export function sendCompatError(reply: FastifyReply, error: KilnError, body: unknown, status = error.status): FastifyReply {
  if (isKilnError(error) && error.code === 'RATE_LIMITED') {
    const retry = (error.extra as { retry_after?: number } | undefined)?.retry_after;
    if (retry !== undefined) reply.header('retry-after', String(retry));
  }
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
}
