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
import { Readable } from 'node:stream';
import { KilnError, type SessionStep } from '@kiln/core';
import { z } from 'zod';
import type { JobDeps } from '../services/job-deps.js';
import {
  createSession,
  deleteSession,
  getTenantSession,
  keepaliveSession,
  listTenantSessions,
} from '../services/sessions/lifecycle.js';
import {
  listSessionFiles,
  makeSessionDir,
  readSessionFile,
  removeSessionFile,
  renameSessionFile,
  writeSessionFile,
} from '../services/sessions/files.js';
import { getStep, killStep, listSteps, relayStepFromRunner, submitStep, writeStepStdin, type StepEvent, type StepEvents } from '../services/sessions/steps.js';
import { defineRoute, idParams, type RouteSpec } from './route.js';
import { SseWriter } from './sse-writer.js';

const stepListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(100),
  /** the transcript after this sequence (the previous page's `next_cursor`) */
  cursor: z.coerce.number().int().min(0).optional(),
});

/** A path in the session's /workspace, relative (the runner refuses `..`, absolute paths and links). */
const workspacePath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => !p.includes('\0'), 'must not contain NUL');
const pathQuery = z.strictObject({ path: workspacePath });
const listPathQuery = z.strictObject({ path: z.string().max(1024).refine((p) => !p.includes('\0'), 'must not contain NUL').default('') });
const fileEntrySchema = z.object({
  name: z.string(),
  type: z.enum(['file', 'dir', 'symlink', 'other']),
  size_bytes: z.number().int(),
  mode: z.number().int(),
  modified_at: z.string(),
});

/** Sessions (issue 8): thin routes over services/sessions. */
/** A step's persisted (inline) output as `output` events, for a watcher that saw none of it live. */
function writePersistedOutput(sse: SseWriter, step: SessionStep): void {
  if (step.stdout) sse.output('output', { stream: 'stdout', data: step.stdout }, step.stdout.length);
  if (step.stderr) sse.output('output', { stream: 'stderr', data: step.stderr }, step.stderr.length);
}

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
      method: 'POST',
      url: '/v1/sessions/:id/steps/:sequence/stdin',
      summary: 'Write to a running background step\'s stdin; eof closes it',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.step_stdin', resourceType: 'session' },
      params: stepParamsSchema,
      body: z.strictObject({ data: z.string().max(1024 * 1024).default(''), eof: z.boolean().default(false) }),
      response: z.object({ written_bytes: z.number().int() }),
      handler: ({ principal, params, body }) => writeStepStdin(deps, principal, params.id, params.sequence, body),
    }),
    defineRoute({
      method: 'PUT',
      url: '/v1/sessions/:id/files',
      summary: 'Write a file: the raw bytes as the body (application/octet-stream), streamed to the sandbox',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.file_write', resourceType: 'session' },
      params: idParams,
      query: pathQuery,
      successStatus: 201,
      response: z.object({ path: z.string(), size_bytes: z.number().int() }),
      handler: async ({ principal, params, query, request, reply }) => {
        const body = request.body;
        try {
          const mediaType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
          if (mediaType !== 'application/octet-stream' || !(body instanceof Readable)) {
            throw new KilnError('UNSUPPORTED_MEDIA_TYPE', 'send the file as raw bytes with content-type application/octet-stream', {
              field: 'headers.content-type',
            });
          }
          return await writeSessionFile(deps, principal, params.id, query.path, body);
        } catch (err) {
          // A refused write (the disk is full, the path is bad) closes the connection after the answer.
          // Refused before the whole body was read, a kept-open socket would still carry the upload's
          // unread bytes and the client's next request on it would be reset. Whether the runner had read
          // it all by then is a race (a fast pipe may take 16 MiB before the disk says no): always close.
          reply.header('connection', 'close');
          throw err;
        }
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/files',
      summary: 'Read a file: its bytes, streamed',
      tag: 'sessions',
      auth: 'key',
      params: idParams,
      query: pathQuery,
      raw: true,
      handler: async ({ principal, params, query, reply }) => {
        const file = await readSessionFile(deps, principal, params.id, query.path);
        reply.header('content-type', 'application/octet-stream');
        if (file.size) reply.header('content-length', file.size);
        return reply.send(file.stream);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/files/list',
      summary: 'List a folder: name, type, size_bytes, mode, modified_at (links reported, never followed)',
      tag: 'sessions',
      auth: 'key',
      params: idParams,
      query: listPathQuery,
      response: z.object({ items: z.array(fileEntrySchema) }),
      handler: ({ principal, params, query }) => listSessionFiles(deps, principal, params.id, query.path),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/sessions/:id/files',
      summary: 'Remove a file, a link (not its target) or a folder',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.file_remove', resourceType: 'session' },
      params: idParams,
      query: pathQuery,
      successStatus: 204,
      handler: async ({ principal, params, query }) => {
        await removeSessionFile(deps, principal, params.id, query.path);
        return null;
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/files/mkdir',
      summary: 'Make a folder (and its parents)',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.file_mkdir', resourceType: 'session' },
      params: idParams,
      body: z.strictObject({ path: workspacePath }),
      successStatus: 204,
      handler: async ({ principal, params, body }) => {
        await makeSessionDir(deps, principal, params.id, body.path);
        return null;
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/files/rename',
      summary: 'Rename or move a file or folder within /workspace',
      tag: 'sessions',
      auth: 'key',
      audit: { action: 'session.file_rename', resourceType: 'session' },
      params: idParams,
      body: z.strictObject({ from: workspacePath, to: workspacePath }),
      successStatus: 204,
      handler: async ({ principal, params, body }) => {
        await renameSessionFile(deps, principal, params.id, body.from, body.to);
        return null;
      },
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
        if (!live && step.status === 'running') {
          // Running on another replica: its output comes from the runner that holds it.
          sse.control('status', { status: 'running' });
          const gone = new AbortController();
          res.once('close', () => gone.abort());
          const { step: ended, relayed } = await relayStepFromRunner(
            deps,
            principal,
            params.id,
            params.sequence,
            (e) => {
              if (e.type === 'output') sse.output('output', { stream: e.stream, data: e.data }, e.data.length);
              else sse.control('truncated', { reason: e.reason });
            },
            gone.signal,
          ).catch(async () => ({ step: await getStep(deps, principal, params.id, params.sequence), relayed: false }));
          if (!relayed) writePersistedOutput(sse, ended);
          sse.control('end', ended);
          sse.end();
          return null;
        }
        if (!live) {
          // Ended: the persisted step, whole.
          sse.control('status', { status: step.status });
          writePersistedOutput(sse, step);
          sse.control('end', step);
          sse.end();
          return null;
        }
        sse.control('status', { status: 'running' });
        // What it printed before this watcher came, then the rest live (same tick: nothing in between).
        for (const e of live.history) if (e.type === 'output') sse.output('output', { stream: e.stream, data: e.data }, e.data.length);
        if (live.historyCut) sse.control('truncated', { reason: 'history_limit' });
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
