import { listOf, listQuerySchema, runnerNodeSchema, sandboxInstanceSchema, sandboxStatusSchema } from '@kiln/core';
import { z } from 'zod';
import { drainRunner, getFleetRunner, listFleet, listFleetSandboxes, revokeRunnerCredential } from '../services/fleet.js';
import type { JobDeps } from '../services/job-deps.js';
import { defineRoute, idParams, type RouteSpec } from './route.js';

const sandboxQuery = listQuerySchema.extend({
  job_id: z.string().max(64).optional(),
  session_id: z.string().max(64).optional(),
  runner_id: z.string().max(64).optional(),
  status: sandboxStatusSchema.optional().describe('only instances in this state (with runner_id: its live load)'),
});

/** The operator's view of the fleet: runner nodes and sandbox instances. */
export function fleetRoutes(jobDeps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/v1/runners',
      summary: 'List runner nodes',
      tag: 'fleet',
      auth: 'key',
      query: listQuerySchema,
      response: listOf(runnerNodeSchema),
      handler: ({ principal, query }) => listFleet(jobDeps, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/runners/:id',
      summary: 'Get a runner node',
      tag: 'fleet',
      auth: 'key',
      params: idParams,
      response: runnerNodeSchema,
      handler: ({ principal, params }) => getFleetRunner(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runners/:id/drain',
      errors: ['INVALID_TRANSITION'],
      summary: 'Drain a runner: no new work; running jobs finish',
      tag: 'fleet',
      auth: 'key',
      audit: { action: 'runner.drain', resourceType: 'runner' },
      params: idParams,
      bodyOptional: true,
      body: z.strictObject({}),
      response: runnerNodeSchema,
      handler: ({ principal, params }) => drainRunner(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/runners/:id/credential',
      operationId: 'revokeRunnerCredential',
      summary: 'Revoke a runner\'s credential: its calls are refused until it registers again with the join token',
      tag: 'fleet',
      auth: 'key',
      audit: { action: 'runner.credential_revoke', resourceType: 'runner' },
      params: idParams,
      response: runnerNodeSchema,
      handler: ({ principal, params }) => revokeRunnerCredential(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sandboxes',
      summary: 'List sandbox instances, by job, session or runner (a tenant: those of one of its jobs or sessions)',
      tag: 'fleet',
      auth: 'key',
      query: sandboxQuery,
      response: listOf(sandboxInstanceSchema),
      handler: ({ principal, query }) => listFleetSandboxes(jobDeps, principal, query),
    }),
  ];
}
