import { Readable } from 'node:stream';
import { JOB_STDIN_CHUNK_MAX_BYTES, KilnError } from '@kiln/core';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { JobDeps } from '../../services/job-deps.js';
import { writeJobStdin } from '../../services/job-stdin/job-stdin.js';
import { defineRoute, idParams, type RouteSpec } from '../route.js';

const stdinQuery = z.strictObject({
  eof: z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1').optional().describe('close the program\'s stdin after these bytes'),
});

/** `POST /v1/jobs/{id}/stdin`: raw bytes for a running `stdin_open` job (see services/job-stdin). */
export function jobStdinRoutes(deps: JobDeps): RouteSpec[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/jobs/:id/stdin',
      summary: 'Write to a running job\'s stdin (submitted with stdin_open): raw bytes, at most 64 KiB a call; ?eof=true closes it',
      operationId: 'writeJobStdin',
      tag: 'jobs',
      auth: 'key',
      audit: { action: 'job.stdin', resourceType: 'job' },
      errors: ['CONFLICT', 'INVALID_TRANSITION', 'UNAVAILABLE'],
      params: idParams,
      query: stdinQuery,
      rawBody: {
        type: 'application/octet-stream',
        description: `the bytes, at most ${JOB_STDIN_CHUNK_MAX_BYTES}; empty with ?eof=true only closes stdin. Answered once the program's pipe took them`,
      },
      response: z.object({ written_bytes: z.number().int(), eof: z.boolean() }),
      handler: async ({ principal, params, query, request }) =>
        writeJobStdin(deps, principal, params.id, { data: await stdinBytes(request), eof: query.eof ?? false }),
    }),
  ];
}

/** The body's bytes, bounded while read: a longer body is refused before it is held whole. */
async function stdinBytes(request: FastifyRequest): Promise<Buffer> {
  if (request.body === undefined || request.body === null) return Buffer.alloc(0);
  const mediaType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType !== 'application/octet-stream' || !(request.body instanceof Readable)) {
    throw new KilnError('UNSUPPORTED_MEDIA_TYPE', 'send stdin as raw bytes with content-type application/octet-stream', { field: 'headers.content-type' });
  }
  const tooLarge = () =>
    new KilnError('PAYLOAD_TOO_LARGE', `one stdin write carries at most ${JOB_STDIN_CHUNK_MAX_BYTES} bytes; split it`, { field: 'body' });
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > JOB_STDIN_CHUNK_MAX_BYTES) throw tooLarge();
  // A chunked body is counted as it comes; past the bound the rest is read and dropped, so the answer
  // still reaches the client (a reset connection would not tell it why).
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= JOB_STDIN_CHUNK_MAX_BYTES) chunks.push(chunk);
  }
  if (size > JOB_STDIN_CHUNK_MAX_BYTES) throw tooLarge();
  return Buffer.concat(chunks);
}
