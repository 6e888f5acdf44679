import { isKilnError, KilnError } from '@kiln/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { compatPrincipal } from '../../../services/compat/compat-principal.js';
import { judge0Language, judge0LanguageName, JUDGE0_LANGUAGES } from '../../../services/compat/judge0/languages.js';
import { JUDGE0_STATUSES } from '../../../services/compat/judge0/statuses.js';
import {
  JUDGE0_MAX_BATCH,
  judge0Issues,
  judge0SubmissionSchema,
  Judge0ValidationError,
} from '../../../services/compat/judge0/submission-request.js';
import {
  createJudge0Submission,
  deleteJudge0,
  findSubmission,
  Judge0EncodingError,
  judge0View,
  parseFields,
} from '../../../services/compat/judge0/submissions.js';
import type { JobDeps } from '../../../services/job-deps.js';
import { waitForJob } from '../../../services/jobs.js';
import { listFleetLanguages } from '../../../store/runners.js';
import type { Principal } from '../../../services/context.js';
import { defineRoute, pollSignal, type RouteSpec } from '../../route.js';
import { compatFailure, compatJsonBody, recordCompatRefusal, secretsOf, sendCompatError } from '../compat-errors.js';

export interface Judge0RouteOptions {
  /** where the face is mounted (KILN_JUDGE0_PREFIX) */
  prefix: string;
  /** the agent requests without a key act as (KILN_JUDGE0_AGENT) */
  agentId?: string | undefined;
  callbackHosts: readonly string[];
}

const flag = (v: unknown) => v === 'true' || v === '1';
const query = (request: FastifyRequest) => (request.query ?? {}) as Record<string, string | undefined>;
const json = (schema: z.ZodType) => z.toJSONSchema(schema, { unrepresentable: 'any' }) as Record<string, unknown>;

/** Judge0's error shapes: 422 `{"field": [...]}`, otherwise `{"error": "..."}` with kiln's status. */
function sendJudge0Error(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof Judge0ValidationError) recordCompatRefusal(request, err.status, 'VALIDATION_FAILED', err.message);
  if (err instanceof Judge0ValidationError) return sendCompatError(reply, new KilnError('VALIDATION_FAILED', err.message), err.fields, err.status);
  if (err instanceof Judge0EncodingError) return sendCompatError(reply, new KilnError('VALIDATION_FAILED', err.message), { error: err.message }, err.status);
  const error = compatFailure(request, err);
  return sendCompatError(reply, error, { error: error.message });
}

/** A path's parameters as a schema that accepts any value (the handler answers a bad one as Judge0 does). */
function pathParams(path: string): z.ZodType | undefined {
  const names = [...path.matchAll(/:([a-z_]+)/g)].map((m) => m[1]!);
  return names.length === 0 ? undefined : z.object(Object.fromEntries(names.map((n) => [n, z.string()])));
}

const submissionDoc = json(z.object({ token: z.string() }).catchall(z.unknown()));

/**
 * Judge0 CE (issue 12, point 2) at the operator's prefix: submissions (single, batch, wait, fields,
 * base64), languages with Judge0's ids, the fourteen statuses, about. `X-Auth-Token` carries a kiln key.
 */
export function judge0Routes(deps: JobDeps, options: Judge0RouteOptions): RouteSpec[] {
  const p = options.prefix;
  const principalOf = async (request: FastifyRequest): Promise<Principal> => {
    const token = request.headers['x-auth-token'];
    const presented = (Array.isArray(token) ? token[0] : token) ?? request.headers.authorization;
    request.kilnPrincipal = await compatPrincipal(deps, secretsOf(request), presented, options.agentId);
    return request.kilnPrincipal;
  };
  const guarded = (work: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    async ({ request, reply }: { request: FastifyRequest; reply: FastifyReply }) => {
      try {
        const answer = await work(request, reply);
        if (!reply.sent) reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(answer));
        return reply;
      } catch (err) {
        return sendJudge0Error(request, reply, err);
      }
    };
  const route = (method: 'GET' | 'POST' | 'DELETE', path: string, summary: string, operationId: string, handler: ReturnType<typeof guarded>, schema = submissionDoc) =>
    defineRoute({
      // Path parameters never fail here: the handler answers a bad one in Judge0's shape (404).
      ...(pathParams(path) ? { params: pathParams(path)! } : {}),
      method,
      url: `${p}${path}`,
      summary: `Judge0: ${summary}`,
      tag: 'compat',
      auth: 'public',
      raw: true,
      operationId,
      ...(method === 'POST' ? { audit: { action: 'job.create', resourceType: 'job' } } : method === 'DELETE' ? { audit: { action: 'job.delete', resourceType: 'job' } } : {}),
      ...(method === 'POST' ? { rawBody: { type: 'application/json', description: 'Judge0\'s request body (read as JSON whatever its content type)' } } : {}),
      responseMedia: { type: 'application/json', schema, description: 'Judge0\'s answer' },
      handler: handler as never,
    });

  const create = async (principal: Principal, body: unknown, base64: boolean) => {
    const parsed = judge0SubmissionSchema.safeParse(body);
    if (!parsed.success) throw judge0Issues(parsed.error);
    return createJudge0Submission(deps, principal, parsed.data, base64, { callbackHosts: options.callbackHosts });
  };

  const languages = async () => {
    const offered = new Map((await listFleetLanguages(deps.store)).map((o) => [o.name, o.versions.at(-1)]));
    return JUDGE0_LANGUAGES.filter((l) => offered.has(l.kiln))
      .map((l) => ({ id: l.id, name: judge0LanguageName(l, offered.get(l.kiln)) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  };

  return [
    route('POST', '/submissions', 'create a submission (`?base64_encoded`, `?wait`, `?fields`): 201 {token}', 'judge0CreateSubmission', guarded(async (request, reply) => {
      const principal = await principalOf(request);
      const q = query(request);
      const base64 = flag(q.base64_encoded);
      const token = await create(principal, compatJsonBody(request), base64);
      reply.code(201);
      if (!flag(q.wait)) return { token };
      const row = await findSubmission(deps, principal, token);
      const deadline = Date.now() + deps.fleet.maxWaitMs;
      const signal = pollSignal(deps, request);
      for (const id of JSON.parse(row.job_ids) as string[]) await waitForJob(deps, principal, id, Math.max(0, deadline - Date.now()), signal);
      return judge0View(deps, principal, row, parseFields(q.fields), base64);
    })),
    route('POST', '/submissions/batch', `create up to ${JUDGE0_MAX_BATCH} submissions: 201 [{token} | {field: [errors]}]`, 'judge0CreateBatch', guarded(async (request, reply) => {
      const principal = await principalOf(request);
      const base64 = flag(query(request).base64_encoded);
      const body = compatJsonBody(request) as { submissions?: unknown };
      if (!Array.isArray(body?.submissions) || body.submissions.length === 0) throw new Judge0ValidationError({ submissions: ["can't be blank"] });
      if (body.submissions.length > JUDGE0_MAX_BATCH) throw new Judge0ValidationError({ submissions: [`size of batch must be at most ${JUDGE0_MAX_BATCH}`] });
      const answers: unknown[] = [];
      for (const item of body.submissions) {
        try {
          answers.push({ token: await create(principal, item, base64) });
        } catch (err) {
          if (!(err instanceof Judge0ValidationError)) throw err;
          recordCompatRefusal(request, err.status, 'VALIDATION_FAILED', err.message);
          answers.push(err.fields);
        }
      }
      reply.code(201);
      return answers;
    }), json(z.array(z.record(z.string(), z.unknown())))),
    route('GET', '/submissions/batch', 'several submissions (`?tokens=a,b`, `?base64_encoded`, `?fields`)', 'judge0GetBatch', guarded(async (request) => {
      const principal = await principalOf(request);
      const q = query(request);
      const tokens = (q.tokens ?? '').split(',').map((t) => t.trim()).filter((t) => t !== '');
      if (tokens.length === 0) throw new Judge0ValidationError({ tokens: ["can't be blank"] });
      if (tokens.length > JUDGE0_MAX_BATCH) throw new Judge0ValidationError({ tokens: [`at most ${JUDGE0_MAX_BATCH}`] });
      const submissions = [];
      for (const token of tokens) {
        try {
          submissions.push(await judge0View(deps, principal, await findSubmission(deps, principal, token), parseFields(q.fields), flag(q.base64_encoded)));
        } catch (err) {
          if (!(isKilnError(err) && err.code === 'NOT_FOUND')) throw err;
          submissions.push(null);
        }
      }
      return { submissions };
    }), json(z.object({ submissions: z.array(z.record(z.string(), z.unknown()).nullable()) }))),
    route('GET', '/submissions/:token', 'a submission (`?base64_encoded`, `?fields`)', 'judge0GetSubmission', guarded(async (request) => {
      const principal = await principalOf(request);
      const q = query(request);
      const { token } = request.params as { token: string };
      return judge0View(deps, principal, await findSubmission(deps, principal, token), parseFields(q.fields), flag(q.base64_encoded));
    })),
    route('DELETE', '/submissions/:token', 'delete an ended submission and its jobs; answers it as it was', 'judge0DeleteSubmission', guarded(async (request) => {
      const principal = await principalOf(request);
      const q = query(request);
      const { token } = request.params as { token: string };
      return deleteJudge0(deps, principal, token, parseFields(q.fields), flag(q.base64_encoded));
    })),
    route('GET', '/languages', 'the languages the fleet offers, with Judge0 CE\'s ids', 'judge0Languages', guarded(async (request) => {
      await principalOf(request);
      return languages();
    }), json(z.array(z.object({ id: z.number(), name: z.string() })))),
    route('GET', '/languages/:id', 'one language by Judge0 CE id', 'judge0Language', guarded(async (request) => {
      await principalOf(request);
      const id = Number((request.params as { id: string }).id);
      const language = Number.isInteger(id) ? judge0Language(id) : undefined;
      const listed = (await languages()).find((l) => language && l.id === language.id);
      if (!language || !listed) throw new KilnError('NOT_FOUND', `language ${String((request.params as { id: string }).id).slice(0, 32)} does not exist`);
      return { id, name: listed.name, is_archived: false, source_file: null, compile_cmd: null, run_cmd: null };
    }), json(z.object({ id: z.number(), name: z.string(), is_archived: z.boolean() }))),
    route('GET', '/statuses', 'Judge0\'s fourteen statuses', 'judge0Statuses', guarded(async () => JUDGE0_STATUSES), json(z.array(z.object({ id: z.number(), description: z.string() })))),
    route('GET', '/about', 'what answers Judge0\'s API here', 'judge0About', guarded(async () => ({
      version: '1.13.1',
      homepage: 'kiln',
      source_code: 'kiln',
      maintainer: 'kiln (a Judge0 CE compatible face over kiln jobs)',
    })), json(z.object({ version: z.string() }).catchall(z.string()))),
  ];
}
