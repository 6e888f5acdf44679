import {
  createSessionSchema,
  createStepSchema,
  keepaliveSchema,
  listOf,
  sessionListQuerySchema,
  sessionSchema,
  sessionStepSchema,
  stepParamsSchema,
} from '@kiln/core';
import { z } from 'zod';
import type { JobDeps } from '../services/job-deps.js';
import {
  createSession,
  deleteSession,
  getTenantSession,
  keepaliveSession,
  listTenantSessions,
} from '../services/sessions/lifecycle.js';
import { getStep, killStep, listSteps, submitStep, type StepEvent, type StepEvents } from '../services/sessions/steps.js';
import { defineRoute, idParams, type RouteSpec } from './route.js';
import { SseWriter } from './sse-writer.js';

const stepListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(100),
  /** the transcript after this sequence (the previous page's `next_cursor`) */
  cursor: z.coerce.number().int().min(0).optional(),
});

/** Sessions (issue 8): thin routes over services/sessions. */
export function sessionRoutes(deps: JobDeps, events: StepEvents): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/sessions',
      summary: 'Create a session: answers 201 once its persistent sandbox takes commands',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.create', resourceType: 'session' },
      body: createSessionSchema,
      bodyOptional: true,
      response: sessionSchema,
      successStatus: 201,
      handler: ({ principal, body }) => createSession(deps, principal, body),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions',
      summary: 'List sessions (filters: status, agent_id)',
      tag: 'sessions',
      auth: 'key',
      query: sessionListQuerySchema,
      response: listOf(sessionSchema),
      handler: ({ principal, query }) => listTenantSessions(deps, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id',
      summary: 'Get a session',
      tag: 'sessions',
      auth: 'key',
      params: idParams,
      response: sessionSchema,
      handler: ({ principal, params }) => getTenantSession(deps, principal, params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/sessions/:id',
      summary: 'End a session (terminated, reason deleted) and destroy its sandbox; idempotent',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.terminate', resourceType: 'session' },
      params: idParams,
      response: sessionSchema,
      handler: ({ principal, params }) => deleteSession(deps, principal, params.id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/keepalive',
      summary: 'Move expires_at to now + ttl_seconds (never past the policy maximum)',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.keepalive', resourceType: 'session' },
      params: idParams,
      body: keepaliveSchema,
      bodyOptional: true,
      response: sessionSchema,
      handler: ({ principal, params, body }) => keepaliveSession(deps, principal, params.id, body.ttl_seconds),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/steps',
      summary: 'Run a step: answers when it ends (bounded), or at once with background',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.step', resourceType: 'session' },
      params: idParams,
      body: createStepSchema,
      response: sessionStepSchema,
      successStatus: 201,
      handler: ({ principal, params, body }) => submitStep(deps, events, principal, params.id, body),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/steps',
      summary: 'The session transcript: its steps by sequence',
      tag: 'sessions',
      auth: 'key',
      params: idParams,
      query: stepListQuery,
      response: listOf(sessionStepSchema),
      handler: ({ principal, params, query }) =>
        listSteps(deps, principal, params.id, { limit: query.limit, after_sequence: query.cursor }),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/steps/:sequence',
      summary: 'Get one step',
      tag: 'sessions',
      auth: 'key',
      params: stepParamsSchema,
      response: sessionStepSchema,
      handler: ({ principal, params }) => getStep(deps, principal, params.id, params.sequence),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/steps/:sequence/kill',
      summary: 'Kill a running step (the session lives on)',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.step_kill', resourceType: 'session' },
      params: stepParamsSchema,
      bodyOptional: true,
      body: z.strictObject({}),
      response: sessionStepSchema,
      handler: ({ principal, params }) => killStep(deps, principal, params.id, params.sequence),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/steps/:sequence/events',
      summary: 'Server-sent events of a step: `status`, `output` chunks, then `end` with the step',
      tag: 'sessions',
      auth: 'key',
      params: stepParamsSchema,
      raw: true,
      handler: async ({ principal, params, reply }) => {
        const step = await getStep(deps, principal, params.id, params.sequence);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        const sse = new SseWriter(res, {
          maxBufferedBytes: deps.streams.watcherBufferBytes,
          stallTimeoutMs: deps.streams.stallTimeoutMs,
          cutNotice: { event: 'truncated', data: { reason: 'slow_reader' } },
          onCut: () => {},
          onDropped: () => {},
        });
        const live = step.status === 'running' ? events.get(step.id) : undefined;
        if (!live) {
          // Ended (or running on another replica): the persisted step, whole.
          sse.control('status', { status: step.status });
          if (step.stdout) sse.output('output', { stream: 'stdout', data: step.stdout }, step.stdout.length);
          if (step.stderr) sse.output('output', { stream: 'stderr', data: step.stderr }, step.stderr.length);
          sse.control('end', step);
          sse.end();
          return null;
        }
        sse.control('status', { status: 'running' });
        await new Promise<void>((resolve) => {
          const onEvent = (e: StepEvent) => {
            if (e.type === 'output') sse.output('output', { stream: e.stream, data: e.data }, e.data.length);
            else if (e.type === 'end') {
              sse.control('end', e.step);
              done();
            }
          };
          const done = () => {
            live.off('event', onEvent);
            sse.end();
            resolve();
          };
          live.on('event', onEvent);
          res.once('close', done);
        });
        return null;
      },
    }),
  ];
}
