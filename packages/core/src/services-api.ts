import { z } from 'zod';
import { jobFileSchema } from './jobs-api.js';
import { languageNameSchema } from './policy.js';
import { envSchema, idText } from './sessions-api.js';

const KiB = 1024;

/** `readiness`: when a starting service counts as running. */
export const readinessSchema = z.strictObject({
  /** an HTTP path that must answer 2xx; without it, the port accepting a connection is enough */
  path: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^\/[\x21-\x7e]*$/, 'must be an absolute HTTP path such as "/healthz"')
    .optional(),
  /** @default 30000 */
  timeout_ms: z.number().int().min(100).max(10 * 60 * 1000).default(30_000),
});

/** `POST /v1/services` (issue 9, point 1). */
export const createServiceSchema = z
  .strictObject({
    policy_id: idText.optional(),
    agent_id: idText.optional(),
    language: languageNameSchema.optional(),
    code: z.string().max(1024 * KiB).optional(),
    files: z.array(jobFileSchema).max(256).optional(),
    /** a string runs under /bin/sh -c; an array is the argv */
    command: z.union([
      z.string().min(1).max(64 * KiB).refine((c) => !c.includes('\0'), 'must not contain NUL'),
      z.array(z.string().max(64 * KiB).refine((c) => !c.includes('\0'), 'must not contain NUL')).min(1).max(1024),
    ]),
    /** the port the service listens on inside its sandbox (127.0.0.1 or 0.0.0.0) */
    port: z.number().int().min(1).max(65_535),
    env: envSchema.optional(),
    readiness: readinessSchema.optional(),
    /** @default the policy's `services.max_ttl_seconds` */
    ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
    /** @default "never" */
    restart: z.enum(['never', 'on-failure']).default('never'),
    /** open to anyone with the URL; only where the policy's `services.allow_public` is true. @default false */
    public: z.boolean().default(false),
    zone: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'must be a zone name').optional(),
  })
  .refine((s) => s.code === undefined || s.language !== undefined, { message: 'code needs a language', path: ['language'] });
export type CreateServiceRequest = z.infer<typeof createServiceSchema>;

export const SERVICE_STATUSES = ['starting', 'running', 'stopped', 'terminated'] as const;
/** Why a service ended. `stopped` is the user's stop; the rest end in `terminated`. */
export const SERVICE_END_REASONS = [
  'stopped',
  'crashed',
  'exited',
  'readiness_timeout',
  'ttl',
  'tenant_suspended',
  'agent_disabled',
  'runner_lost',
  'start_failed',
] as const;
export type ServiceEndReason = (typeof SERVICE_END_REASONS)[number];

export const serviceSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  agent_id: z.string().nullable(),
  policy_id: z.string(),
  policy_version: z.number().int(),
  status: z.enum(SERVICE_STATUSES),
  reason: z.enum(SERVICE_END_REASONS).nullable(),
  language: z.string().nullable(),
  command: z.union([z.string(), z.array(z.string())]),
  port: z.number().int(),
  env: z.record(z.string(), z.string()),
  files: z.array(z.string()),
  readiness: z.object({ path: z.string().nullable(), timeout_ms: z.number().int() }),
  ttl_seconds: z.number().int(),
  restart: z.enum(['never', 'on-failure']),
  restarts: z.number().int(),
  public: z.boolean(),
  zone: z.string().nullable(),
  proxy_url: z.string(),
  runner_id: z.string().nullable(),
  sandbox_id: z.string().nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  stopped_at: z.string().nullable(),
  expires_at: z.string(),
  last_activity_at: z.string(),
});
export type Service = z.infer<typeof serviceSchema>;

export const serviceListQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().min(1).max(512).optional(),
  status: z.enum(SERVICE_STATUSES).optional(),
  agent_id: idText.optional(),
});

/** `POST /v1/services/{id}/tokens` and `POST /v1/sessions/{id}/ports/{port}/tokens` (point 3). */
export const createServiceTokenSchema = z.strictObject({
  /** @default 3600 */
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).default(3600),
});

export const serviceTokenSchema = z.object({
  id: z.string(),
  /** shown once: send it as `X-Kiln-Service-Token`, or once as `?kiln_token=` (a cookie keeps it) */
  token: z.string(),
  owner_type: z.enum(['service', 'session']),
  owner_id: z.string(),
  port: z.number().int(),
  created_at: z.string(),
  expires_at: z.string(),
  /** the URL to open, the token in its query */
  url: z.string(),
});
export type ServiceToken = z.infer<typeof serviceTokenSchema>;

export const SERVICE_TOKEN_HEADER = 'x-kiln-service-token';
export const SERVICE_TOKEN_QUERY = 'kiln_token';
