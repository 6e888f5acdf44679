import { z } from 'zod';
import { compatPrincipal } from '../../../services/compat/compat-principal.js';
import { executePiston, listPistonRuntimes, pistonError, pistonExecuteSchema } from '../../../services/compat/piston.js';
import type { JobDeps } from '../../../services/job-deps.js';
import { defineRoute, pollSignal, type RouteSpec } from '../../route.js';
import type { FastifyRequest } from 'fastify';
import { compatFailure, compatJsonBody, secretsOf, sendCompatError } from '../compat-errors.js';

/** Where Piston's v2 API is mounted: its clients append `/runtimes` and `/execute` to it. */
export const PISTON_PREFIX = '/api/v2';

export interface PistonOptions {
  /** The agent key-less requests act as (`KILN_PISTON_AGENT`); without, a key is required. */
  agentId?: string | undefined;
}

const runtimeSchema = z.object({
  language: z.string(),
  version: z.string(),
  aliases: z.array(z.string()),
  runtime: z.string().optional(),
});

const stageSchema = z.object({
  stdout: z.string(),
  stderr: z.string(),
  output: z.string(),
  code: z.number().int().nullable(),
  signal: z.string().nullable(),
  message: z.string().nullable(),
  status: z.enum(['RE', 'SG', 'TO', 'OL', 'EL', 'XX']).nullable(),
  cpu_time: z.number(),
  wall_time: z.number(),
  memory: z.number(),
});

/** The first zod issue as Piston words its errors: `<field> <problem>`. */
function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
  return `${path || 'body'}: ${issue.message}`;
}

/**
 * Piston v2 (issue 12, point 1): `GET /api/v2/runtimes` and `POST /api/v2/execute`, each execution a
 * kiln job under the caller's policy (audited, listed in `/v1/jobs`). Errors are Piston's
 * `{"message": …}`. The body is JSON whatever its content type (piston-client sends none).
 */
export function pistonRoutes(deps: JobDeps, options: PistonOptions): RouteSpec[] {
  const principalOf = async (request: FastifyRequest) => {
    request.kilnPrincipal = await compatPrincipal(deps, secretsOf(request), request.headers.authorization, options.agentId);
    return request.kilnPrincipal;
  };
  return [
    defineRoute({
      method: 'GET',
      url: `${PISTON_PREFIX}/runtimes`,
      summary: 'Piston: the runtimes the fleet offers (language, version, aliases, runtime)',
      tag: 'compat',
      auth: 'public',
      raw: true,
      operationId: 'pistonRuntimes',
      responseMedia: { type: 'application/json', schema: z.toJSONSchema(z.array(runtimeSchema)) as Record<string, unknown>, description: 'Piston runtimes' },
      handler: async ({ request, reply }) => {
        try {
          await principalOf(request);
          const runtimes = await listPistonRuntimes(deps);
          return reply.send(runtimes.map(({ language, version, aliases, runtime }) => ({ language, version, aliases, ...(runtime ? { runtime } : {}) })));
        } catch (err) {
          const error = compatFailure(request, err);
          return sendCompatError(reply, error, { message: error.message });
        }
      },
    }),
    defineRoute({
      method: 'POST',
      url: `${PISTON_PREFIX}/execute`,
      summary: 'Piston: run files in a language (a kiln job); compile and run stages; 400 {message} past the policy',
      tag: 'compat',
      auth: 'public',
      raw: true,
      audit: { action: 'job.create', resourceType: 'job' },
      operationId: 'pistonExecute',
      rawBody: { type: 'application/json', description: 'Piston\'s execute request (any content type is read as JSON)' },
      responseMedia: {
        type: 'application/json',
        schema: z.toJSONSchema(
          z.object({ language: z.string(), version: z.string(), run: stageSchema.optional(), compile: stageSchema.optional() }),
        ) as Record<string, unknown>,
        description: 'Piston\'s execute answer',
      },
      handler: async ({ request, reply }) => {
        try {
          const principal = await principalOf(request);
          const parsed = pistonExecuteSchema.safeParse(compatJsonBody(request));
          if (!parsed.success) {
            const error = compatFailure(request, pistonError(firstIssue(parsed.error)));
            return sendCompatError(reply, error, { message: error.message });
          }
          return reply.send(await executePiston(deps, principal, parsed.data, pollSignal(deps, request)));
        } catch (err) {
          const error = compatFailure(request, err);
          // Piston answers every refusal of a request as 400; kiln keeps 401/403/429 so clients can tell.
          return sendCompatError(reply, error, { message: error.message });
        }
      },
    }),
  ];
}
