import { Readable } from 'node:stream';
import {
  decimalIntegerQuery,
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
import type { Principal } from '../services/context.js';
import type { JobDeps } from '../services/job-deps.js';
import { leaseWork, registerRunner, reportJobEvents, runnerHeartbeat, uploadJobBlob } from '../services/runner-protocol.js';
import { completeJob } from '../services/job-completion.js';
import { defineRoute, idParams, pollSignal, type RouteSpec } from './route.js';


const attemptQuery = z.strictObject({ attempt: decimalIntegerQuery(1, 1_000_000) });

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

/**
 * The runner a call acts for: the one its credential names. A body that names another is refused, so a
 * runner cannot speak for one it is not.
 */
function boundRunner(principal: Principal, bodyRunnerId?: string): string {
  if (principal.kind !== 'runner') throw new KilnError('FORBIDDEN', 'only a runner credential may call this');
  if (bodyRunnerId !== undefined && bodyRunnerId !== principal.runnerId) {
    throw new KilnError('FORBIDDEN', `this credential is runner ${principal.runnerId}'s; it cannot act for ${bodyRunnerId}`, {
      field: 'body.runner_id',
    });
  }
  return principal.runnerId;
}

/**
 * The runner protocol under /v1/runner/* (ARCHITECTURE.md §7): registration takes the fleet's join token
 * (or the runner's own credential, to prove a restart); everything else only the runner's credential.
 */
export function runnerRoutes(jobDeps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/runner/register',
      operationId: 'registerRunner',
      errors: ['CONFLICT'],
      summary: 'Register a runner node (again after a restart)',
      tag: 'runner protocol',
      auth: 'runner_join',
      audit: { action: 'runner.register', resourceType: 'runner' },
      body: registerRunnerSchema,
      response: registerRunnerResponseSchema,
      handler: ({ body, principal }) =>
        registerRunner(jobDeps, body, principal.kind === 'runner' ? principal.runnerId : undefined),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/heartbeat',
      operationId: 'sendRunnerHeartbeat',
      summary: 'Heartbeat: extends held leases, answers which to stop (long poll up to one interval)',
      tag: 'runner protocol',
      auth: 'runner',
      body: heartbeatSchema,
      response: heartbeatResponseSchema,
      handler: ({ body, request, principal }) =>
        runnerHeartbeat(jobDeps, { ...body, runner_id: boundRunner(principal, body.runner_id) }, pollSignal(jobDeps, request)),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/lease',
      operationId: 'leaseJobs',
      summary: 'Long-poll for work',
      tag: 'runner protocol',
      auth: 'runner',
      body: leaseRequestSchema,
      response: leaseResponseSchema,
      handler: ({ body, request, principal }) =>
        leaseWork(
          jobDeps,
          { ...body, runner_id: boundRunner(principal, body.runner_id) },
          pollSignal(jobDeps, request),
          principal.kind === 'runner' ? principal.node : undefined,
        ),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/leases/:id/events',
      operationId: 'reportLeaseEvents',
      errors: ['STALE_ATTEMPT'],
      summary: 'Report a lease\'s start and output chunks',
      tag: 'runner protocol',
      auth: 'runner',
      audit: { action: 'job.report_events', resourceType: 'job' },
      params: idParams,
      body: jobEventsReportSchema,
      successStatus: 204,
      handler: async ({ params, body, principal }) => {
        await reportJobEvents(jobDeps, boundRunner(principal), params.id, body);
        return null;
      },
    }),
    defineRoute({
      method: 'PUT',
      url: '/v1/runner/leases/:id/blobs',
      summary: 'Upload a blob (stdout, stderr, an artifact) for a lease; raw bytes',
      operationId: 'uploadLeaseBlob',
      rawBody: {
        type: 'application/octet-stream',
        description: 'the blob\'s bytes; Content-Length reserves the room (chunked bodies are counted as they come)',
      },
      errors: ['STALE_ATTEMPT', 'ARTIFACT_REJECTED'],
      tag: 'runner protocol',
      auth: 'runner',
      audit: { action: 'job.upload_blob', resourceType: 'job' },
      params: idParams,
      query: attemptQuery,
      response: uploadedBlobSchema,
      successStatus: 201,
      handler: ({ params, query, request, principal }) => {
        const body = rawUploadBody(request);
        return uploadJobBlob(jobDeps, boundRunner(principal), params.id, query.attempt, body, declaredLength(request));
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/runner/leases/:id/complete',
      operationId: 'completeLease',
      errors: ['STALE_ATTEMPT', 'ARTIFACT_REJECTED'],
      summary: 'Report a lease\'s result, fenced by its attempt; idempotent',
      tag: 'runner protocol',
      auth: 'runner',
      audit: { action: 'job.complete', resourceType: 'job' },
      params: idParams,
      body: completionReportSchema,
      successStatus: 204,
      handler: async ({ params, body, principal }) => {
        await completeJob(jobDeps, boundRunner(principal), params.id, body);
        return null;
      },
    }),
  ];
}
