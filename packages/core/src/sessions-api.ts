import { z } from 'zod';
import { collectSchema, jobFileSchema, outputRefsSchema, rejectedArtifactSchema } from './jobs-api.js';
import { exitStatusSchema, resourceUsageSchema, verdictSchema } from './verdicts.js';

const KiB = 1024;

const envNameSchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name');
export const envSchema = z
  .record(envNameSchema, z.string().max(32 * KiB).refine((v) => !v.includes('\0'), 'must not contain NUL'))
  .refine((env) => Object.keys(env).length <= 128, 'at most 128 variables');
export const idText = z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/, 'must be an id such as "pol_01hx…"');

/** `POST /v1/sessions` (issue 8, point 1). */
export const createSessionSchema = z.strictObject({
  policy_id: idText.optional(),
  agent_id: idText.optional(),
  /** @default the policy's `sessions.max_ttl_seconds` */
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  zone: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'must be a zone name').optional(),
  env: envSchema.optional(),
  metadata: z
    .record(z.string().min(1).max(64), z.string().max(1024))
    .refine((m) => Object.keys(m).length <= 32, 'at most 32 entries')
    .optional(),
  files: z.array(jobFileSchema).max(256).optional(),
});
export type CreateSessionRequest = z.infer<typeof createSessionSchema>;

export const keepaliveSchema = z.strictObject({
  /** @default the session's ttl_seconds */
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
});

export const SESSION_STATUSES = ['active', 'expired', 'terminated'] as const;
export const SESSION_END_REASONS = ['deleted', 'tenant_suspended', 'agent_disabled', 'runner_lost', 'ttl', 'idle'] as const;
export type SessionEndReason = (typeof SESSION_END_REASONS)[number];

export const sessionSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  agent_id: z.string().nullable(),
  policy_id: z.string(),
  policy_version: z.number().int(),
  status: z.enum(SESSION_STATUSES),
  reason: z.enum(SESSION_END_REASONS).nullable(),
  ttl_seconds: z.number().int(),
  idle_timeout_seconds: z.number().int(),
  zone: z.string().nullable(),
  env: z.record(z.string(), z.string()),
  metadata: z.record(z.string(), z.string()),
  files: z.array(z.string()),
  runner_id: z.string().nullable(),
  sandbox_id: z.string().nullable(),
  created_at: z.string(),
  expires_at: z.string(),
  last_activity_at: z.string(),
  ended_at: z.string().nullable(),
  last_step_sequence: z.number().int(),
});
export type Session = z.infer<typeof sessionSchema>;

export const sessionListQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().min(1).max(512).optional(),
  status: z.enum(SESSION_STATUSES).optional(),
  agent_id: idText.optional(),
});

/** `POST /v1/sessions/{id}/steps` (point 3). */
export const createStepSchema = z.strictObject({
  /** a string runs under /bin/sh -c; an array is the argv */
  command: z.union([
    z.string().min(1).max(64 * KiB).refine((c) => !c.includes('\0'), 'must not contain NUL'),
    z.array(z.string().max(64 * KiB).refine((c) => !c.includes('\0'), 'must not contain NUL')).min(1).max(1024),
  ]),
  stdin: z.string().max(1024 * KiB).optional(),
  env: envSchema.optional(),
  cwd: z.string().min(1).max(1024).refine((c) => !c.includes('\0'), 'must not contain NUL').optional(),
  /** @default the policy's limits.wall_time_ms */
  timeout_ms: z.number().int().min(1).max(24 * 3600 * 1000).optional(),
  /** answer at once instead of when the step ends */
  background: z.boolean().default(false),
  /** globs of files under /workspace kept as artifacts of the step once it ends (none by default) */
  collect: collectSchema.optional(),
});
export type CreateStepRequest = z.infer<typeof createStepSchema>;

export const STEP_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;

export const sessionStepSchema = z.object({
  id: z.string(),
  session_id: z.string(),
  sequence: z.number().int(),
  command: z.union([z.string(), z.array(z.string())]),
  status: z.enum(STEP_STATUSES),
  background: z.boolean(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  exit_status: exitStatusSchema.nullable(),
  resource_usage: resourceUsageSchema.nullable(),
  verdict: verdictSchema.nullable(),
  stdout: z.string().nullable(),
  stderr: z.string().nullable(),
  error: z.string().nullable(),
  /** the step's artifacts once it ended: stdout, stderr and the files it collected (ids) */
  output_refs: outputRefsSchema.nullable(),
  /** collected files refused (policy's artifact limits, storage quota) and why */
  rejected_artifacts: z.array(rejectedArtifactSchema),
});
export type SessionStep = z.infer<typeof sessionStepSchema>;

export const stepParamsSchema = z.strictObject({
  id: idText,
  sequence: z.coerce.number().int().min(1).max(2 ** 31),
});
