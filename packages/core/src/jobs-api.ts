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
  )
  // The same rule for the OpenAPI document: segments that are neither empty, "." nor "..", no leading "/".
  .meta({ pattern: '^(?!/)(?!.*(?:^|/)\\.{1,2}(?:/|$))(?!.*//)(?!.*/$)[^\\u0000]+$' });

export const jobFileSchema = z.strictObject({
  path: workspacePathSchema,
  content: z.string().max(8 * MiB),
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
}).meta({ id: 'JobFile' });
export type JobFile = z.infer<typeof jobFileSchema>;

const envNameSchema = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,127}$/,
    'must be an environment variable name: a letter or "_", then letters, digits or "_", at most 128 characters (e.g. "MY_VAR")',
  );

/**
 * A glob as a runner takes it from a lease: relative to the workspace. Looser than what a submission
 * may ask (collectGlobSchema), so a job queued under older rules still leases; the runner's matcher is
 * linear and its walk bounded whatever the glob (core/glob.ts, runner sandbox/collect.ts).
 */
export const leasedCollectGlobSchema = z
  .string()
  .min(1)
  .max(1024)
  .refine((g) => !g.startsWith('/') && !g.split('/').includes('..'), 'must be a glob relative to the workspace');

/** Bounds on the `collect` globs of one job request: they are tenant input matched against sandbox data. */
export const COLLECT_LIMITS = {
  maxGlobs: 32,
  maxGlobLength: 255,
  /** `*` and `?` characters in one glob (`**` counts two). */
  maxWildcardsPerGlob: 16,
  /** Characters of all globs together. */
  maxTotalLength: 1024,
} as const;

/** Globs of files under /workspace to keep as artifacts, e.g. `out/**` or `*.png`. */
export const collectGlobSchema = z
  .string()
  .min(1)
  .max(COLLECT_LIMITS.maxGlobLength)
  .refine((g) => !g.startsWith('/') && !g.split('/').includes('..'), 'must be a glob relative to the workspace')
  .refine((g) => !/[\u0000-\u001f\u007f]/.test(g), 'must not contain control characters')
  .refine(
    (g) => (g.match(/[*?]/g)?.length ?? 0) <= COLLECT_LIMITS.maxWildcardsPerGlob,
    `at most ${COLLECT_LIMITS.maxWildcardsPerGlob} wildcards (* and ?) per glob; narrow it, e.g. "out/**"`,
  )
  .meta({
    pattern: '^(?!/)(?!(?:.*/)?\\.\\.(?:/|$))[^\\u0000-\\u001f\\u007f]+$',
    description: `relative to the workspace, no "..", at most ${COLLECT_LIMITS.maxWildcardsPerGlob} wildcards (* and ?)`,
  });

/** The `collect` globs of a job or a session step: bounded by COLLECT_LIMITS. */
export const collectSchema = z
  .array(collectGlobSchema)
  .max(COLLECT_LIMITS.maxGlobs)
  .refine(
    (globs) => globs.reduce((n, g) => n + g.length, 0) <= COLLECT_LIMITS.maxTotalLength,
    `the globs may have at most ${COLLECT_LIMITS.maxTotalLength} characters together`,
  );

/**
 * Limits of a compiled language's compile step (Piston's `compile_timeout`, `compile_cpu_time`,
 * `compile_memory_limit`), each at or under the policy's ceiling of the same name. The compile step
 * runs in the job's sandbox before the program: its time comes on top of the run's limits, its memory
 * is the larger of the two. Interpreted languages have no compile step and ignore them.
 */
export const compileLimitsSchema = requestedLimitsSchema
  .pick({ cpu_time_ms: true, wall_time_ms: true, memory_bytes: true })
  .strict();
export type CompileLimits = z.infer<typeof compileLimitsSchema>;

/**
 * Extra compiler flags (Judge0's `compiler_options`): words of letters, digits and `-+.=/:_,`, passed
 * to the compiler as separate arguments after its name, never through a shell's parsing.
 */
export const compilerOptionsSchema = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_\-+.=/:, ]*$/, 'may contain only letters, digits, spaces and - + . = / : _ ,');

/**
 * The body limit of a job submission: the request's text (code, files, stdin: JOB_TEXT_MAX_CHARS
 * together) fits it even when JSON escapes double it, so a schema-valid request is never a 413.
 */
export const JOB_BODY_LIMIT_BYTES = 20 * MiB;
/** Characters of code, file contents and stdin of one job request, together. */
export const JOB_TEXT_MAX_CHARS = 8 * MiB;

/** The most bytes one `POST /v1/jobs/{id}/stdin` (or one Piston stdin message) carries. */
export const JOB_STDIN_CHUNK_MAX_BYTES = 64 * KiB;

/** A job request (ARCHITECTURE.md §5). Exactly one of `code` and `files`. */
export const createJobSchema = z
  .strictObject({
    language: languageNameSchema,
    version: z.string().min(1).max(64).optional(),
    code: z.string().max(8 * MiB).optional(),
    files: z.array(jobFileSchema).min(1).max(256).optional(),
    entrypoint: workspacePathSchema.optional(),
    stdin: z.string().max(8 * MiB).optional(),
    /**
     * Keep the program's stdin open after `stdin`: more arrives with `POST /v1/jobs/{id}/stdin` while
     * the job runs (`?eof=true` closes it); the job's wall time still bounds a program that waits.
     */
    stdin_open: z.boolean().optional(),
    args: z.array(z.string().max(4096)).max(256).optional(),
    env: z
      .record(envNameSchema, z.string().max(32 * KiB))
      .optional()
      .meta({ maxProperties: 128, description: 'at most 128 variables in env and secret_env together' }),
    /**
     * Variables whose values are secret: they reach the sandbox's environment but are never stored in
     * plaintext, never logged and never in an answer or the audit (see the README's "Secret env").
     */
    secret_env: z
      .record(envNameSchema, z.string().max(32 * KiB))
      .optional()
      .meta({ maxProperties: 128, description: 'never stored in plaintext nor answered; names not also in env' }),
    limits: requestedLimitsSchema.optional(),
    compile_limits: compileLimitsSchema.optional(),
    compiler_options: compilerOptionsSchema.optional(),
    policy_id: z.string().max(64).optional(),
    agent_id: z.string().max(64).optional(),
    zone: z.string().min(1).max(64).optional(),
    collect: collectSchema.optional(),
  })
  .superRefine((job, ctx) => {
    if ((job.code === undefined) === (job.files === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['code'], message: 'give exactly one of "code" and "files"' });
    }
    const text = (job.code?.length ?? 0) + (job.stdin?.length ?? 0) + (job.files ?? []).reduce((n, f) => n + f.content.length, 0);
    if (text > JOB_TEXT_MAX_CHARS) {
      ctx.addIssue({
        code: 'custom',
        path: [job.files ? 'files' : 'code'],
        message: `code, file contents and stdin may have at most ${JOB_TEXT_MAX_CHARS} characters together (8 MiB); this request has ${text}`,
      });
    }
    const secretNames = Object.keys(job.secret_env ?? {});
    if (Object.keys(job.env ?? {}).length + secretNames.length > 128) {
      ctx.addIssue({ code: 'custom', path: [secretNames.length > 0 ? 'secret_env' : 'env'], message: 'at most 128 variables in env and secret_env together' });
    }
    for (const name of secretNames) {
      if (job.env && Object.hasOwn(job.env, name)) {
        ctx.addIssue({ code: 'custom', path: ['secret_env', name], message: 'is in env too; give each variable once' });
      }
    }
  })
  .meta({
    id: 'CreateJobRequest',
    description:
      'Exactly one of `code` and `files`. Code, file contents and stdin: at most 8 MiB characters together; ' +
      'the whole body at most 20 MiB (413 beyond, naming the limit).',
    oneOf: [{ required: ['code'], not: { required: ['files'] } }, { required: ['files'], not: { required: ['code'] } }],
    examples: [{ language: 'python', code: 'print("hello")', limits: { wall_time_ms: 5000 } }],
  });
export type CreateJobRequest = z.infer<typeof createJobSchema>;
/** What a client may send: defaults (a file's `encoding`, `args`, …) are optional. */
export type CreateJobInput = z.input<typeof createJobSchema>;

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

/**
 * A compiled language's compile step, apart from the run: its own verdict (`ok`, `compile_error` for a
 * compiler that failed, `time_limit` past `compile_limits`), exit, usage and output. Output is cut at
 * COMPILE_OUTPUT_MAX_BYTES per stream (`output_truncated`).
 */
export const compileResultSchema = z
  .object({
    verdict: z.enum(['ok', 'compile_error', 'time_limit']),
    exit_status: exitStatusSchema,
    resource_usage: z.object({ cpu_time_ms: z.number().nonnegative(), wall_time_ms: z.number().nonnegative() }),
    stdout: z.string(),
    stderr: z.string(),
    output_truncated: z.boolean(),
  });
export type CompileResult = z.infer<typeof compileResultSchema>;
/** Bytes of each compile stream a result keeps. */
export const COMPILE_OUTPUT_MAX_BYTES = 64 * KiB;

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
  /** The compile step of a compiled language, separate from the run; null for interpreted ones. */
  compile: compileResultSchema.nullable().optional(),
  rejected_artifacts: z.array(rejectedArtifactSchema).optional(),
  error: z.string().nullable().optional(),
}).meta({ id: 'Job' });
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
