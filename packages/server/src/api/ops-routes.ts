import { ERROR_CATALOGUE, KilnError, problemTypeOf, type ErrorCode } from '@kiln/core';
import { z } from 'zod';
import type { HttpMetrics } from './metrics.js';
import { defineRoute, type RouteSpec } from './route.js';

const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];
const errorPageParams = z.strictObject({ code: z.string().min(1).max(64).regex(/^[a-z-]+$/, 'must be an error code in kebab case, e.g. "validation-failed"') });

function errorPage(code: ErrorCode): string {
  const { status, title } = ERROR_CATALOGUE[code];
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8">',
    `<title>${code}: ${title}</title></head><body>`,
    `<h1>${code}</h1><p>HTTP ${status}: ${title}.</p>`,
    '<p>The problem document\'s <code>detail</code> says what was wrong and what to do, and <code>field</code> names the',
    'part of the request at fault (<code>errors</code> lists every bad field). The code is stable: match on it, not on the text.</p>',
    '</body></html>',
  ].join('\n');
}

/** Health, readiness, metrics: for load balancers and Prometheus, no key needed. */
export function opsRoutes(metrics: HttpMetrics): RouteSpec[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/healthz',
      summary: 'The process is up',
      tag: 'operations',
      auth: 'public',
      response: z.object({ ok: z.boolean() }),
      handler: async () => ({ ok: true }),
    }),
    defineRoute({
      method: 'GET',
      url: '/readyz',
      errors: ['UNAVAILABLE'],
      summary: 'The database answers',
      tag: 'operations',
      auth: 'public',
      response: z.object({ ok: z.boolean() }),
      handler: async ({ deps }) => {
        try {
          await deps.store.ping();
        } catch (err) {
          throw new KilnError('UNAVAILABLE', 'the database does not answer', { cause: err });
        }
        return { ok: true };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/errors/:code',
      summary: 'The page a problem\'s `type` names: what the error code means (HTML)',
      tag: 'operations',
      auth: 'public',
      operationId: 'getErrorPage',
      params: errorPageParams,
      raw: true,
      responseMedia: { type: 'text/html', schema: { type: 'string' } },
      handler: async ({ params, reply }) => {
        const code = ERROR_CODES.find((c) => problemTypeOf(c) === `/errors/${params.code}`);
        if (!code) throw new KilnError('NOT_FOUND', `no error page ${params.code}; see /errors/validation-failed and the others in the OpenAPI Problem schema`);
        reply.type('text/html; charset=utf-8').send(errorPage(code));
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/metrics',
      operationId: 'getMetrics',
      summary: 'Prometheus metrics (text format)',
      tag: 'operations',
      auth: 'public',
      raw: true,
      handler: async ({ reply }) => {
        reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
      },
    }),
  ];
}
