import {
  decimalIntegerQuery,
  artifactSchema,
  createJobSchema,
  jobSchema,
  jobStatusSchema,
  languageNameSchema,
  verdictSchema,
  listOf,
  listQuerySchema,
  artifactOwnerTypeSchema,
  JOB_BODY_LIMIT_BYTES,
} from '@kiln/core';
import { z } from 'zod';
import { deleteArtifact, getTenantArtifact, listTenantArtifacts, openTenantArtifact } from '../services/artifacts.js';
import type { JobDeps } from '../services/job-deps.js';
import { cancelJob, getTenantJob, listTenantJobs, submitJob, waitForJob } from '../services/jobs.js';
import { isTerminalStatus } from '../services/job-views.js';
import { deleteJob } from '../services/retention.js';
import { streamJobEvents } from './job-events-stream.js';
import { defineRoute, idParams, pollSignal, type RouteSpec } from './route.js';

const booleanQuery = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const createJobQuery = z.strictObject({
  wait: booleanQuery.optional(),
  /** how long `wait` may block, bounded by the server's maximum */
  timeout_ms: decimalIntegerQuery(0, 600_000).optional(),
});

const listJobsQuery = listQuerySchema.extend({
  status: jobStatusSchema.optional(),
  agent_id: z.string().max(64).optional(),
  language: languageNameSchema.optional().describe('only jobs in this language'),
  verdict: verdictSchema.optional().describe('only ended jobs with this verdict'),
});

const listArtifactsQuery = listQuerySchema.extend({
  owner_type: artifactOwnerTypeSchema.optional(),
  owner_id: z.string().max(64).optional().describe('the owner\'s id; needs owner_type'),
});

/** Jobs and their artifacts: tenant admins and agents. */
export function jobRoutes(jobDeps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/jobs',
      summary: 'Submit a job (`?wait=true` blocks until it ends, bounded)',
      tag: 'jobs',
      auth: 'key',
      audit: { action: 'job.create', resourceType: 'job' },
      query: createJobQuery,
      body: createJobSchema,
      bodyLimitBytes: JOB_BODY_LIMIT_BYTES,
      bodyExample: { language: 'python', code: 'print("hello")', limits: { wall_time_ms: 5000 } },
      response: jobSchema,
      successStatus: 201,
      operationId: 'createJob',
      errors: ['POLICY_VIOLATION', 'UNSUPPORTED_LANGUAGE', 'RATE_LIMITED', 'CONFLICT'],
      otherResponses: {
        '202': {
          description: '`?wait=true` and the job had not ended within the wait: the job as it is; follow Location',
          headers: { Location: { description: 'the job: `/v1/jobs/{id}`', schema: { type: 'string' } } },
        },
      },
      handler: async ({ principal, body, query, request, reply }) => {
        const submitted = await submitJob(jobDeps, principal, body);
        if (!query.wait) return submitted;
        const timeoutMs = Math.min(query.timeout_ms ?? jobDeps.fleet.maxWaitMs, jobDeps.fleet.maxWaitMs);
        const job = await waitForJob(jobDeps, principal, submitted.id, timeoutMs, pollSignal(jobDeps, request), submitted);
        // Still running when the wait ends: 202 and where to look, not a 201 that reads as done.
        if (!isTerminalStatus(job.status)) reply.code(202).header('location', `/v1/jobs/${job.id}`);
        return job;
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/jobs',
      summary: 'List jobs, newest first',
      tag: 'jobs',
      auth: 'key',
      query: listJobsQuery,
      response: listOf(jobSchema),
      handler: ({ principal, query }) => listTenantJobs(jobDeps, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/jobs/:id',
      summary: 'Get a job',
      tag: 'jobs',
      auth: 'key',
      params: idParams,
      response: jobSchema,
      handler: ({ principal, params }) => getTenantJob(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/jobs/:id/cancel',
      summary: 'Cancel a job (a running one is killed within a second); an ended job is answered unchanged (idempotent)',
      operationId: 'cancelJob',
      tag: 'jobs',
      auth: 'key',
      audit: { action: 'job.cancel', resourceType: 'job' },
      params: idParams,
      bodyOptional: true,
      body: z.strictObject({}),
      response: jobSchema,
      handler: ({ principal, params }) => cancelJob(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/jobs/:id',
      errors: ['CONFLICT'],
      summary: 'Delete an ended job with its artifacts (a queued or running one is 409: cancel it first)',
      tag: 'jobs',
      auth: 'key',
      audit: { action: 'job.delete', resourceType: 'job' },
      params: idParams,
      successStatus: 204,
      handler: async ({ principal, params }) => {
        await deleteJob(jobDeps, principal, params.id);
        return null;
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/jobs/:id/events',
      operationId: 'streamJobEvents',
      errors: ['RATE_LIMITED'],
      responseMedia: { type: 'text/event-stream', schema: { type: 'string' }, description: 'server-sent events until `end`' },
      summary:
        'Server-sent events of a job: `status`, `output` chunks as produced, `truncated` when live output is incomplete ' +
        '(the stdout/stderr artifacts hold it all), then `end`; 429 RATE_LIMITED past the watcher caps',
      tag: 'jobs',
      auth: 'key',
      params: idParams,
      raw: true,
      handler: ({ principal, params, request, reply }) => streamJobEvents(jobDeps, principal, params.id, request, reply),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/artifacts',
      summary: 'List artifacts, optionally of one owner',
      tag: 'artifacts',
      auth: 'key',
      query: listArtifactsQuery,
      response: listOf(artifactSchema),
      handler: ({ principal, query }) => listTenantArtifacts(jobDeps, principal, query),
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/artifacts/:id',
      summary: 'Get an artifact',
      tag: 'artifacts',
      auth: 'key',
      params: idParams,
      response: artifactSchema,
      handler: ({ principal, params }) => getTenantArtifact(jobDeps, principal, params.id),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/artifacts/:id',
      summary: 'Delete an artifact (its blob goes when no other artifact has the same content)',
      tag: 'artifacts',
      auth: 'key',
      audit: { action: 'artifact.delete', resourceType: 'artifact' },
      params: idParams,
      successStatus: 204,
      handler: async ({ principal, params }) => {
        await deleteArtifact(jobDeps, principal, params.id);
        return null;
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/artifacts/:id/content',
      summary: 'Download an artifact; its checksum is in the X-Kiln-Checksum header',
      operationId: 'downloadArtifact',
      responseMedia: { type: 'application/octet-stream', schema: { type: 'string', format: 'binary' }, description: 'the artifact\'s bytes' },
      responseHeaders: {
        'X-Kiln-Checksum': { description: 'the bytes\' checksum, `sha256:<hex>`', schema: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' } },
        Digest: { description: 'the same checksum as `sha-256=<base64>` (RFC 3230)', schema: { type: 'string' } },
        'Content-Disposition': { description: '`attachment; filename="…"`', schema: { type: 'string' } },
      },
      tag: 'artifacts',
      auth: 'key',
      params: idParams,
      raw: true,
      handler: async ({ principal, params, reply }) => {
        const { artifact, body } = await openTenantArtifact(jobDeps, principal, params.id);
        const filename = artifact.name.split('/').pop()!.replace(/[^A-Za-z0-9._-]/g, '_');
        return reply
          .header('content-type', 'application/octet-stream')
          .header('content-length', artifact.size_bytes)
          .header('x-kiln-checksum', artifact.checksum)
          .header('digest', `sha-256=${Buffer.from(artifact.checksum.slice(7), 'hex').toString('base64')}`)
          .header('content-disposition', `attachment; filename="${filename}"`)
          .send(body);
      },
    }),
  ];
}
