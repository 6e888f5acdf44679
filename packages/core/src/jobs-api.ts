import { z } from 'zod';
import { requestedLimitsSchema } from './limits.js';
import { languageNameSchema } from './policy.js';
import { exitStatusSchema, resourceUsageSchema, verdictSchema } from './verdicts.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A relative path inside /workspace: no leading slash, no `..`, no empty or odd segments. */
export const workspacePathSchema = z
  .string()
  .min(1)
  .max(255)
  .refine(
    (p) => !p.startsWith('/') && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..') && !p.includes('\0'),
    'must be a relative path inside the workspace without "..", e.g. "src/main.py"',
  );

export const jobFileSchema = z.strictObject({
  path: workspacePathSchema,
  content: z.string().max(8 * MiB),
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
});
export type JobFile = z.infer<typeof jobFileSchema>;

const envNameSchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name');

/** Globs of files under /workspace to keep as artifacts, e.g. `out/**` or `*.png`. */
export const collectGlobSchema = z
  .string()
  .min(1)
  .max(255)
  .refine((g) => !g.startsWith('/') && !g.split('/').includes('..'), 'must be a glob relative to the workspace');

/** A job request (ARCHITECTURE.md §5). Exactly one of `code` and `files`. */
export const createJobSchema = z
  .strictObject({
    language: languageNameSchema,
    version: z.string().min(1).max(64).optional(),
    code: z.string().max(8 * MiB).optional(),
    files: z.array(jobFileSchema).min(1).max(256).optional(),
    entrypoint: workspacePathSchema.optional(),
    stdin: z.string().max(8 * MiB).optional(),
    args: z.array(z.string().max(4096)).max(256).optional(),
    env: z.record(envNameSchema, z.string().max(32 * KiB)).optional(),
    limits: requestedLimitsSchema.optional(),
    policy_id: z.string().max(64).optional(),
    agent_id: z.string().max(64).optional(),
    zone: z.string().min(1).max(64).optional(),
    collect: z.array(collectGlobSchema).max(32).optional(),
  })
  .superRefine((job, ctx) => {
    if ((job.code === undefined) === (job.files === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['code'], message: 'give exactly one of "code" and "files"' });
    }
    if (job.env && Object.keys(job.env).length > 128) {
      ctx.addIssue({ code: 'custom', path: ['env'], message: 'at most 128 variables' });
    }
  });
export type CreateJobRequest = z.infer<typeof createJobSchema>;

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const jobStatusSchema = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof jobStatusSchema>;

export const outputRefsSchema = z.object({
  stdout: z.string().nullable(),
  stderr: z.string().nullable(),
  artifacts: z.array(z.string()),
});
export type OutputRefs = z.infer<typeof outputRefsSchema>;

/** An artifact refused at collection (over the policy's size or count), recorded on the job. */
export const rejectedArtifactSchema = z.object({
  name: z.string(),
  size_bytes: z.number().int().nonnegative(),
  reason: z.string(),
});
export type RejectedArtifact = z.infer<typeof rejectedArtifactSchema>;

/** A job as the API answers it. */
export const jobSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  agent_id: z.string().nullable(),
  policy_id: z.string(),
  policy_version: z.number().int(),
  language: z.string(),
  version: z.string().nullable(),
  status: jobStatusSchema,
  verdict: verdictSchema.nullable(),
  attempt: z.number().int(),
  zone: z.string().nullable(),
  requested_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  exit_status: exitStatusSchema.nullable(),
  resource_usage: resourceUsageSchema.nullable(),
  output_refs: outputRefsSchema.nullable(),
  /** stdout/stderr inline when small (the artifacts hold them in full). */
  stdout: z.string().nullable().optional(),
  stderr: z.string().nullable().optional(),
  rejected_artifacts: z.array(rejectedArtifactSchema).optional(),
  error: z.string().nullable().optional(),
});
export type Job = z.infer<typeof jobSchema>;

/** Output up to this size is also returned inline in the job. */
export const INLINE_OUTPUT_MAX_BYTES = 64 * KiB;

/**
 * Why a job's live stream is missing output. Counted in `/metrics` as
 * `kiln_live_output_dropped_bytes_total{reason}` (except `not_buffered`: nothing was dropped, the
 * output reached this replica before the watcher or never reached it).
 */
export const outputLossReasonSchema = z.enum([
  /** the control plane refused a batch of the runner's output */
  'runner_refused',
  /** the runner held more undelivered output than it may and let the excess go */
  'runner_backlog',
  /** the control plane's per-job live buffer was full: a watcher joining later misses the rest */
  'live_buffer_full',
  /** this watcher did not read fast enough: its backlog passed its bound and its output was cut */
  'slow_watcher',
  /** output produced before this watcher joined is not held here (another replica, or forgotten) */
  'not_buffered',
]);
export type OutputLossReason = z.infer<typeof outputLossReasonSchema>;

/**
 * The `truncated` event of a job's event stream: live output is incomplete, and where the whole of it
 * is (the job's stdout and stderr artifacts, named by `output_refs` of the `end` event).
 */
export const outputTruncatedNoticeSchema = z.object({
  reason: outputLossReasonSchema,
  /** the stream that lost output, when one did */
  stream: z.enum(['stdout', 'stderr']).nullable(),
  /** bytes known to be missing, when known */
  dropped_bytes: z.number().int().nonnegative().nullable(),
  /** false: this stream sends no more output, only status changes and `end` */
  live_output_continues: z.boolean(),
  detail: z.string(),
});
export type OutputTruncatedNotice = z.infer<typeof outputTruncatedNoticeSchema>;
