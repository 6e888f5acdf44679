import { KilnError } from '@kiln/core';
import { z } from 'zod';
import type { HttpMetrics } from './metrics.js';
import { defineRoute, type RouteSpec } from './route.js';

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
      url: '/metrics',
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
