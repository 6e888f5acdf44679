import { Readable } from 'node:stream';
import {
  completionReportSchema,
  heartbeatResponseSchema,
  heartbeatSchema,
  jobEventsReportSchema,
  leaseRequestSchema,
  leaseResponseSchema,
  registerRunnerResponseSchema,
  registerRunnerSchema,
  uploadedBlobSchema,
  KilnError,
} from '@kiln/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { JobDeps } from '../services/job-deps.js';
import { leaseWork, registerRunner, reportJobEvents, runnerHeartbeat, uploadJobBlob } from '../services/runner-protocol.js';
import { completeJob } from '../services/job-completion.js';
import { defineRoute, idParams, pollSignal, type RouteSpec } from './route.js';


const attemptQuery = z.strictObject({ attempt: z.coerce.number().int().min(1) });

/**
 * Blob uploads arrive as raw bytes; they are streamed into the artifact store, never buffered, and
 * bounded there by the job's own limits.
 */
export function acceptRawUploads(app: FastifyInstance): void {
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
}

/**
 * The upload's byte stream. Anything but `application/octet-stream` is refused (415) before any lookup:
 * a JSON or text body would be parsed, and a JSON string stored decoded, other bytes than those sent.
 */
function rawUploadBody(request: FastifyRequest): Readable {
  const declared = declaredLength(request);
  const announced = request.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared > 0);
  if (request.body === undefined || request.body === null || !announced) {
    throw new KilnError('VALIDATION_FAILED', 'the upload has no body: send the blob\'s bytes as application/octet-stream', {
      field: 'body',
    });
  }
  const mediaType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType !== 'application/octet-stream' || !(request.body instanceof Readable)) {
    throw new KilnError('UNSUPPORTED_MEDIA_TYPE', 'a blob is uploaded as raw bytes with content-type application/octet-stream', {
      field: 'headers.content-type',
    });
  }
  return request.body;
}

/** The declared Content-Length, when there is one: the upload reserves exactly that much room. */
function declaredLength(request: FastifyRequest): number | undefined {
  const header = request.headers['content-length'];
  if (header === undefined || !/^\d{1,15}$/.test(header)) return undefined;
  return Number(header);
}

/** The runner protocol under /v1/runner/*, open only to the runner token (ARCHITECTURE.md §7). */
export function runnerRoutes(jobDeps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/runner/register',
      summary: 'Register a runner node (again after a restart)',
      tag: 'runner protocol',
      auth: 'runner',
      audit: { action: 'runner.register', resourceType: 'runner' },
      body: registerRunnerSchema,
      response: registerRunnerResponseSchema,
      handler: ({ body }) => registerRunner(jobDeps, body),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/heartbeat',
      summary: 'Heartbeat: extends held leases, answers which to stop (long poll up to one interval)',
      tag: 'runner protocol',
      auth: 'runner',
      body: heartbeatSchema,
      response: heartbeatResponseSchema,
      handler: ({ body, request }) => runnerHeartbeat(jobDeps, body, pollSignal(jobDeps, request)),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/lease',
      summary: 'Long-poll for work',
      tag: 'runner protocol',
      auth: 'runner',
      body: leaseRequestSchema,
      response: leaseResponseSchema,
      handler: ({ body, request }) => leaseWork(jobDeps, body, pollSignal(jobDeps, request)),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/leases/:id/events',
      summary: 'Report a lease\'s start and output chunks',
      tag: 'runner protocol',
      auth: 'runner',
      params: idParams,
      body: jobEventsReportSchema,
      successStatus: 204,
      handler: async ({ params, body }) => {
        await reportJobEvents(jobDeps, params.id, body);
        return null;
      },
    }),
    defineRoute({
      method: 'PUT',
      url: '/v1/runner/leases/:id/blobs',
      summary: 'Upload a blob (stdout, stderr, an artifact) for a lease; raw bytes',
      tag: 'runner protocol',
      auth: 'runner',
      params: idParams,
      query: attemptQuery,
      response: uploadedBlobSchema,
      successStatus: 201,
      handler: ({ params, query, request }) => {
        const body = rawUploadBody(request);
        return uploadJobBlob(jobDeps, params.id, query.attempt, body, declaredLength(request));
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/leases/:id/complete',
      summary: 'Report a lease\'s result, fenced by its attempt; idempotent',
      tag: 'runner protocol',
      auth: 'runner',
      audit: { action: 'job.complete', resourceType: 'job' },
      params: idParams,
      body: completionReportSchema,
      successStatus: 204,
      handler: async ({ params, body }) => {
        await completeJob(jobDeps, params.id, body);
        return null;
      },
    }),
  ];
}
