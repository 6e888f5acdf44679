import {
  createServiceSchema,
  createServiceTokenSchema,
  listOf,
  serviceListQuerySchema,
  serviceSchema,
  serviceTokenSchema,
} from '@kiln/core';
import { z } from 'zod';
import type { ServiceHosting } from '../services/hosted-services/hosting.js';
import { createService, getTenantService, listTenantServices, stopService } from '../services/hosted-services/lifecycle.js';
import { followServiceLogs } from '../services/hosted-services/logs.js';
import { createServiceToken, createSessionPortToken, revokeToken } from '../services/hosted-services/tokens.js';
import type { JobDeps } from '../services/job-deps.js';
import { defineRoute, idParams, pollSignal, type RouteSpec } from './route.js';
import { SseWriter } from './sse-writer.js';

const idText = idParams.shape.id;
const tokenParams = z.strictObject({ id: idText, token_id: idText });
const portParams = z.strictObject({ id: idText, port: z.coerce.number().int().min(1).max(65_535) });
const revokedSchema = z.object({ id: z.string(), revoked_at: z.string().nullable() });

/** Services (issue 9): thin routes over services/hosted-services; the proxy itself is service-proxy.ts. */
export function serviceRoutes(deps: JobDeps, hosting: ServiceHosting): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/services',
      summary: 'Start a service: answers 201 `starting` once its sandbox runs the command; `running` once the port (and readiness path) answers',
      tag: 'services',
      auth: 'key',
      audit: { action: 'service.create', resourceType: 'service' },
      body: createServiceSchema,
      response: serviceSchema,
      successStatus: 201,
      handler: ({ principal, body }) => createService(deps, hosting, principal, body),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/services',
      summary: 'List services (filters: status, agent_id)',
      tag: 'services',
      auth: 'key',
      query: serviceListQuerySchema,
      response: listOf(serviceSchema),
      handler: ({ principal, query }) => listTenantServices(deps, hosting, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/services/:id',
      summary: 'Get a service',
      tag: 'services',
      auth: 'key',
      params: idParams,
      response: serviceSchema,
      handler: ({ principal, params }) => getTenantService(deps, hosting, principal, params.id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/services/:id/stop',
      summary: 'Stop a service (stopped) and destroy its sandbox; idempotent',
      tag: 'services',
      auth: 'key',
      audit: { action: 'service.stop', resourceType: 'service' },
      params: idParams,
      response: serviceSchema,
      handler: ({ principal, params }) => forgetting(hosting, params.id, stopService(deps, hosting, principal, params.id)),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/services/:id/logs',
      operationId: 'streamServiceLogs',
      responseMedia: { type: 'text/event-stream', schema: { type: 'string' }, description: 'server-sent events until `end`' },
      summary: 'Server-sent events of the service\'s stdout and stderr from the start (`output` {stream, data}), then `end` when it ends',
      tag: 'services',
      auth: 'key',
      params: idParams,
      raw: true,
      handler: async ({ principal, params, request, reply }) => {
        const signal = pollSignal(deps, request);
        // Authorised and found before the stream opens, so a refusal is a plain problem answer.
        await getTenantService(deps, hosting, principal, params.id);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
        const sse = new SseWriter(res, {
          maxBufferedBytes: deps.streams.watcherBufferBytes,
          stallTimeoutMs: deps.streams.stallTimeoutMs,
          cutNotice: { event: 'truncated', data: { reason: 'slow_reader' } },
          onCut: () => {},
          onDropped: () => {},
        });
        const keepAlive = setInterval(() => sse.keepAlive(), 15_000);
        try {
          await followServiceLogs(deps, principal, params.id, signal, (line) => {
            switch (line.type) {
              case 'stdout':
              case 'stderr':
                return sse.output('output', { stream: line.type, data: line.data }, line.data.length);
              case 'dropped':
                return sse.control('truncated', { reason: 'history_limit', bytes: line.bytes });
              case 'end':
                return sse.control('end', { state: line.state, reason: line.reason });
            }
          });
        } catch (err) {
          sse.control('error', { detail: (err as Error).message });
        } finally {
          clearInterval(keepAlive);
          sse.end();
        }
        return null;
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/services/:id/tokens',
      summary: `A token that opens this service alone: as the X-Kiln-Service-Token header, or once as ?kiln_token= (an HttpOnly cookie keeps it)`,
      tag: 'services',
      auth: 'key',
      audit: { action: 'service.token.create', resourceType: 'service' },
      params: idParams,
      body: createServiceTokenSchema,
      bodyOptional: true,
      response: serviceTokenSchema,
      successStatus: 201,
      handler: ({ principal, params, body }) => createServiceToken(deps, hosting, principal, params.id, body.ttl_seconds),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/services/:id/tokens/:token_id',
      summary: 'Revoke a service token: refused from now on',
      tag: 'services',
      auth: 'key',
      audit: { action: 'service.token.revoke', resourceType: 'service' },
      params: tokenParams,
      response: revokedSchema,
      handler: ({ principal, params }) => revokeToken(deps, hosting, principal, 'service', params.id, params.token_id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/ports/:port/tokens',
      summary: 'A token that opens one port of a session (at /v1/sessions/{id}/ports/{port}/proxy/) and nothing else',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.token.create', resourceType: 'session' },
      params: portParams,
      body: createServiceTokenSchema,
      bodyOptional: true,
      response: serviceTokenSchema,
      successStatus: 201,
      handler: ({ principal, params, body }) => createSessionPortToken(deps, hosting, principal, params.id, params.port, body.ttl_seconds),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/sessions/:id/tokens/:token_id',
      summary: 'Revoke a session port token',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.token.revoke', resourceType: 'session' },
      params: tokenParams,
      response: revokedSchema,
      handler: ({ principal, params }) => revokeToken(deps, hosting, principal, 'session', params.id, params.token_id),
    }),
  ];
}

/** Once a service is stopped, this replica's proxy forgets what it had allowed there (other replicas within the cache's while). */
async function forgetting<T>(hosting: ServiceHosting, ownerId: string, change: Promise<T>): Promise<T> {
  try {
    return await change;
  } finally {
    hosting.grants.forgetOwner(ownerId);
  }
}
