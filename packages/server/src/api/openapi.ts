import { ERROR_CATALOGUE, type ErrorCode } from '@kiln/core';
import { z } from 'zod';
import { MUTATING_METHODS, type RouteSpec } from './route.js';

type JsonSchema = Record<string, unknown>;

/**
 * Named schemas of the document (`#/components/schemas/…`). Schemas with a zod `id` (`.meta({ id: 'Job' })`)
 * keep their name; a request body or response without one is named after its operation
 * (`CreateWorkflowRequest`, `ListJobsResponse`), so every route's schemas are components.
 */
class Components {
  readonly schemas: Record<string, JsonSchema> = {};

  /** Converts `schema`, moving its named parts into the components; answers a `$ref` to it. */
  add(schema: z.ZodType, io: 'input' | 'output', fallbackName: string): JsonSchema {
    const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
    delete json.$schema;
    const defs = (json.$defs ?? {}) as Record<string, JsonSchema>;
    delete json.$defs;
    const renamed = new Map<string, string>();
    for (const [name, def] of Object.entries(defs)) renamed.set(name, this.place(name, io, def));
    const rewrite = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(rewrite);
      if (value === null || typeof value !== 'object') return value;
      const out: JsonSchema = {};
      for (const [k, v] of Object.entries(value)) {
        out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/') ? `#/components/schemas/${renamed.get(v.slice(8))}` : rewrite(v);
      }
      return out;
    };
    for (const name of renamed.values()) this.schemas[name] = rewrite(this.schemas[name]) as JsonSchema;
    const root = rewrite(json) as JsonSchema;
    if (typeof root.$ref === 'string' && Object.keys(root).length === 1) return root;
    return { $ref: `#/components/schemas/${this.place(fallbackName, io, root)}` };
  }

  /** Puts `def` under `name`, or `nameInput` when the output shape of that name differs (defaults, transforms). */
  private place(name: string, io: 'input' | 'output', def: JsonSchema): string {
    const candidates = io === 'input' ? [name, `${name}Input`] : [name, `${name}Output`];
    for (const candidate of candidates) {
      const existing = this.schemas[candidate];
      if (existing === undefined || JSON.stringify(existing) === JSON.stringify(def)) {
        this.schemas[candidate] = def;
        return candidate;
      }
    }
    throw new Error(`two different OpenAPI schemas are both named ${name}`);
  }
}

function parametersOf(schema: z.ZodType | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (!schema) return [];
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(properties).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: s,
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
  }));
}

const problemSchema: JsonSchema = {
  type: 'object',
  description: 'RFC 9457 problem details; `type` is the path of a page this server serves about the code',
  required: ['type', 'title', 'status', 'detail', 'code'],
  properties: {
    type: { type: 'string', format: 'uri-reference', examples: ['/errors/validation-failed'] },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'what was wrong and what to do' },
    code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) },
    field: { type: 'string', description: 'the part of the request at fault, e.g. `body.env.1BAD`' },
    instance: { type: 'string' },
    errors: {
      type: 'array',
      items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } }, required: ['field', 'message'] },
    },
    retry_after: { type: 'number', description: 'with RATE_LIMITED: seconds to wait' },
    limit_bytes: { type: 'integer', description: 'with PAYLOAD_TOO_LARGE: the route\'s body limit' },
  },
  examples: [
    {
      type: '/errors/validation-failed',
      title: 'The request is not valid',
      status: 400,
      detail: 'body.language: is required (string)',
      code: 'VALIDATION_FAILED',
      field: 'body.language',
    },
  ],
};

const ERROR_HEADERS: Record<number, Record<string, unknown>> = {
  401: { 'WWW-Authenticate': { description: '`Bearer`: send `Authorization: Bearer <key>`', schema: { type: 'string' } } },
  405: { Allow: { description: 'the methods this path serves', schema: { type: 'string' } } },
  429: { 'Retry-After': { description: 'seconds to wait before trying again', schema: { type: 'integer' } } },
};

/** The error codes a route answers: those of every route of its kind, and those it names. */
export function errorCodesOf(spec: RouteSpec): ErrorCode[] {
  const codes = new Set<ErrorCode>(spec.errors ?? []);
  if (spec.params || spec.query || spec.body) codes.add('VALIDATION_FAILED');
  if (spec.query && Object.hasOwn((spec.query as z.ZodObject).shape ?? {}, 'cursor')) codes.add('INVALID_CURSOR');
  if (spec.auth !== 'public') {
    codes.add('UNAUTHORIZED');
    codes.add('FORBIDDEN');
  }
  if (spec.params) codes.add('NOT_FOUND');
  if (spec.body || spec.rawBody) {
    codes.add('PAYLOAD_TOO_LARGE');
    codes.add('UNSUPPORTED_MEDIA_TYPE');
  }
  if (spec.body) codes.add('MALFORMED_JSON');
  if (spec.auth !== 'public' && MUTATING_METHODS.has(spec.method)) codes.add('RATE_LIMITED');
  return [...codes];
}

function errorResponses(spec: RouteSpec): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(spec)) {
    const status = ERROR_CATALOGUE[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, unknown> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: codes.map((c) => `${c}: ${ERROR_CATALOGUE[c].title}`).join('; '),
      ...(ERROR_HEADERS[status] ? { headers: ERROR_HEADERS[status] } : {}),
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  }
  return responses;
}

const pascal = (word: string) => word.replace(/(^|[-_])([a-z])/g, (_, __, c: string) => c.toUpperCase());
const singular = (word: string) => (word.endsWith('ies') ? `${word.slice(0, -3)}y` : word.endsWith('s') ? word.slice(0, -1) : word);

/**
 * A readable operationId from method and path: `GET /v1/jobs` listJobs, `POST /v1/jobs` createJob,
 * `GET /v1/jobs/{id}` getJob, `POST /v1/jobs/{id}/cancel` cancelJob, `GET /v1/agents/{id}/keys` listAgentKeys.
 */
export function operationIdOf(spec: RouteSpec): string {
  if (spec.operationId) return spec.operationId;
  const segments = spec.url.split('/').filter((s) => s !== '' && s !== 'v1');
  const endsWithParam = segments.at(-1)?.startsWith(':') ?? false;
  const words = segments.filter((s) => !s.startsWith(':'));
  const last = words.at(-1) ?? 'root';
  // A POST to a singular word after an id is an action on that resource (`cancel`, `drain`).
  if (spec.method === 'POST' && !endsWithParam && !last.endsWith('s') && segments.length > 1 && segments.at(-2)?.startsWith(':')) {
    return `${last.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}${words.slice(0, -1).map((w) => pascal(singular(w))).join('')}`;
  }
  const isCollection = !endsWithParam && last.endsWith('s');
  const verb =
    spec.method === 'GET' ? (isCollection ? 'list' : 'get')
    : spec.method === 'POST' ? (isCollection ? 'create' : 'post')
    : spec.method === 'PATCH' ? 'update'
    : spec.method === 'PUT' ? 'put'
    : 'delete';
  const nouns = words.map((w, i) => (i === words.length - 1 && verb === 'list' ? pascal(w) : pascal(singular(w))));
  return `${verb}${nouns.join('')}`;
}

/** The OpenAPI 3.1 document, generated from the same zod schemas the handlers validate with. */
export function buildOpenApiDocument(specs: RouteSpec[], version: string): JsonSchema {
  const components = new Components();
  components.schemas.Problem = problemSchema;
  const paths: Record<string, Record<string, unknown>> = {};
  const seen = new Set<string>();
  for (const spec of specs) {
    const path = spec.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const operationId = operationIdOf(spec);
    if (seen.has(operationId)) throw new Error(`operationId ${operationId} is used twice; set one on ${spec.method} ${spec.url}`);
    seen.add(operationId);
    const status = String(spec.successStatus ?? 200);
    const base = pascal(operationId);
    const success: Record<string, unknown> = { description: spec.successStatus === 204 ? 'done; no content' : 'success' };
    if (spec.response) {
      success.content = { 'application/json': { schema: components.add(spec.response, 'output', `${base}Response`) } };
    } else if (spec.responseMedia) {
      success.content = { [spec.responseMedia.type]: { schema: spec.responseMedia.schema ?? { type: 'string' } } };
      if (spec.responseMedia.description) success.description = spec.responseMedia.description;
    }
    if (spec.responseHeaders) success.headers = spec.responseHeaders;
    const responses: Record<string, unknown> = { [status]: success };
    for (const [other, response] of Object.entries(spec.otherResponses ?? {})) {
      responses[other] = {
        ...response,
        ...(spec.response ? { content: { 'application/json': { schema: components.add(spec.response, 'output', `${base}Response`) } } } : {}),
      };
    }
    Object.assign(responses, errorResponses(spec));
    const operation: Record<string, unknown> = {
      operationId,
      summary: spec.summary,
      tags: [spec.tag],
      security: spec.auth === 'public' ? [] : [{ bearer: [] }],
      parameters: [...parametersOf(spec.params, 'path'), ...parametersOf(spec.query, 'query')],
      responses,
    };
    if (spec.body) {
      const schema = components.add(spec.body, 'input', `${base}Request`);
      operation.requestBody = {
        required: !spec.bodyOptional,
        content: {
          'application/json': { schema, ...(spec.bodyExample !== undefined ? { example: spec.bodyExample } : {}) },
        },
      };
    } else if (spec.rawBody) {
      operation.requestBody = {
        required: true,
        description: spec.rawBody.description,
        content: { [spec.rawBody.type]: { schema: { type: 'string', contentMediaType: spec.rawBody.type } } },
      };
    }
    paths[path] = { ...paths[path], [spec.method.toLowerCase()]: operation };
  }
  const tags = [...new Set(specs.map((s) => s.tag))].sort().map((name) => ({ name }));
  return {
    openapi: '3.1.0',
    info: {
      title: 'kiln control plane',
      version,
      description:
        'Sandboxed code execution for AI agents. Authenticate with `Authorization: Bearer <key>`. ' +
        'Errors are RFC 9457 problem+json; each `type` is a page this server serves (`/errors/{code}`).',
    },
    servers: [{ url: '/', description: 'this kiln control plane (the document is served by it)' }],
    tags,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: components.schemas,
    },
    paths,
  };
}
