import { createWorkflowSchema, listOf, listQuerySchema, workflowSchema, workflowStatusSchema } from '@kiln/core';
import { z } from 'zod';
import type { JobDeps } from '../services/job-deps.js';
import { submitWorkflow } from '../services/workflows/submission.js';
import { cancelWorkflow, getTenantWorkflow, listTenantWorkflows } from '../services/workflows/queries.js';
import { defineRoute, idParams, type RouteSpec } from './route.js';
import { streamWorkflowEvents } from './workflow-events-stream.js';

const listWorkflowsQuery = listQuerySchema.extend({ status: workflowStatusSchema.optional() });

/** Workflows: multi-step runs of jobs passing artifacts along. Tenant admins and agents. */
export function workflowRoutes(deps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/workflows',
      summary: 'Submit a workflow (every step is checked before anything runs)',
      tag: 'workflows',
      auth: 'key',
      audit: { action: 'workflow.create', resourceType: 'workflow' },
      body: createWorkflowSchema,
      response: workflowSchema,
      successStatus: 201,
      handler: ({ principal, body }) => submitWorkflow(deps, principal, body),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/workflows',
      summary: 'List workflows, newest first',
      tag: 'workflows',
      auth: 'key',
      query: listWorkflowsQuery,
      response: listOf(workflowSchema),
      handler: ({ principal, query }) => listTenantWorkflows(deps, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/workflows/:id',
      summary: 'Get a workflow with its steps',
      tag: 'workflows',
      auth: 'key',
      params: idParams,
      response: workflowSchema,
      handler: ({ principal, params }) => getTenantWorkflow(deps, principal, params.id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/workflows/:id/cancel',
      summary: 'Cancel a workflow: running steps are killed, the rest never start',
      tag: 'workflows',
      auth: 'key',
      audit: { action: 'workflow.cancel', resourceType: 'workflow' },
      params: idParams,
      bodyOptional: true,
      body: z.strictObject({}),
      response: workflowSchema,
      handler: ({ principal, params }) => cancelWorkflow(deps, principal, params.id),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/workflows/:id/events',
      summary: 'Stream a workflow as server-sent events: step changes, each step\'s output, then the end',
      tag: 'workflows',
      auth: 'key',
      params: idParams,
      raw: true,
      handler: ({ principal, params, reply }) => streamWorkflowEvents(deps, principal, params.id, reply),
    }),
  ];
}
