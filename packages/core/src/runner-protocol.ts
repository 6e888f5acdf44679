import { z } from 'zod';
import { egressSummarySchema } from './egress.js';
import { limitsSchema } from './limits.js';
import { artifactRulesSchema, networkRulesSchema } from './policy.js';
import { COMPILE_OUTPUT_MAX_BYTES, compileLimitsSchema, compileResultSchema, jobFileSchema, leasedCollectGlobSchema, workspacePathSchema } from './jobs-api.js';
import { exitStatusSchema, resourceUsageSchema, verdictSchema } from './verdicts.js';

/**
 * The runner protocol (ARCHITECTURE.md §7): runners speak HTTP to any control-plane replica under
 * /v1/runner/*. The fleet's join token (KILN_RUNNER_TOKEN) only registers; registration issues the runner
 * a credential of its own (`kiln_runner_<runner id>_<secret>`) that every later call carries, and the
 * runner a call acts for is the one its credential names. Work is pulled; every report about a job
 * carries the lease's attempt number as a fencing token.
 */

/**
 * One toolchain a runner offers: a language in one version. A language offered in several versions
 * (c through gcc 12 and clang 16) is one entry per version; `runtime` names the toolchain where the
 * catalog has several. Older runners send only name and version.
 */
export const runnerLanguageSchema = z.strictObject({
  name: z.string().min(1).max(32),
  version: z.string().max(128),
  aliases: z.array(z.string().min(1).max(32)).max(16).default([]),
  runtime: z.string().min(1).max(32).optional(),
  libraries: z.array(z.string().min(1).max(64)).max(64).default([]),
});
export type RunnerLanguage = z.infer<typeof runnerLanguageSchema>;

export const registerRunnerSchema = z.strictObject({
  name: z.string().min(1).max(128),
  zone: z.string().min(1).max(64),
  capacity: z.number().int().min(1).max(1024),
  /** Where the control plane reaches this runner for interactive traffic (sessions, services). */
  address: z.string().max(512).nullable(),
  labels: z.record(z.string().max(64), z.string().max(256)).default({}),
  languages: z.array(runnerLanguageSchema).max(256),
});
export type RegisterRunnerRequest = z.infer<typeof registerRunnerSchema>;

export const registerRunnerResponseSchema = z.object({
  runner_id: z.string(),
  /**
   * The runner's own credential, shown once: keep it (mode 0600) and send it as the bearer key on every
   * other call, and on the next registration to prove it is the same node. null when the registration
   * was made with the current credential, which stays valid.
   */
  credential: z.string().nullable(),
  heartbeat_interval_ms: z.number().int(),
  lease_ttl_ms: z.number().int(),
  /**
   * The largest request body the control plane accepts (its body limit): the runner keeps every
   * request, output batches included, well under it. Absent from older servers: assume 1 MiB.
   */
  max_request_bytes: z.number().int().positive().optional(),
  /**
   * True when the control plane takes `live_bytes` in a completion report (and feeds live watchers
   * the output the runner's events did not carry). Absent from older servers: send every event.
   */
  accepts_live_bytes: z.boolean().optional(),
});
export type RegisterRunnerResponse = z.infer<typeof registerRunnerResponseSchema>;

export const leaseRefSchema = z.strictObject({ job_id: z.string().max(64), attempt: z.number().int().min(1) });
export type LeaseRef = z.infer<typeof leaseRefSchema>;

/** Optional and only checked: the runner a call acts for is the one its credential names. */
const bodyRunnerId = z.string().max(64).optional();

const poolCount = z.number().int().min(0).max(1_000_000_000);

/** A runner's warm pool (pre-built sandboxes per shape), as it reports it with each heartbeat. */
export const runnerPoolStatsSchema = z.strictObject({
  ready: poolCount,
  building: poolCount,
  /** Memory limits the ready and building sandboxes carry. */
  held_memory_bytes: z.number().int().min(0),
  shapes: z
    .array(
      z.strictObject({
        shape: z.string().max(200),
        ready: poolCount,
        building: poolCount,
        taken: poolCount,
        missed: poolCount,
        build_failures: poolCount,
      }),
    )
    .max(32),
});
export type RunnerPoolStats = z.infer<typeof runnerPoolStatsSchema>;

export const heartbeatSchema = z.strictObject({
  runner_id: bodyRunnerId,
  /** Jobs this runner is running now; their leases are extended. */
  leases: z.array(leaseRefSchema).max(1024),
  /** Sandboxes alive on the node (ids), for reconciliation. */
  sandboxes: z.array(z.string().max(64)).max(4096).default([]),
  /** The warm pool's counts (runners with a pool), shown on /metrics. */
  pool: runnerPoolStatsSchema.optional(),
});
export type HeartbeatRequest = z.infer<typeof heartbeatSchema>;

export const heartbeatResponseSchema = z.object({
  status: z.enum(['healthy', 'degraded', 'offline']),
  draining: z.boolean(),
  /** Leases the runner must stop now: canceled by a user, or no longer its own (lost, reassigned). */
  stop: z.array(leaseRefSchema.extend({ reason: z.enum(['canceled', 'lost']) })),
});
export type HeartbeatResponse = z.infer<typeof heartbeatResponseSchema>;

export const leaseRequestSchema = z.strictObject({
  runner_id: bodyRunnerId,
  free_slots: z.number().int().min(0).max(1024),
  /** How long the poll may wait for work. */
  wait_ms: z.number().int().min(0).max(60_000).default(25_000),
});
export type LeaseRequest = z.infer<typeof leaseRequestSchema>;

/** Everything a runner needs to run a job, frozen at submission (the policy version is pinned). */
export const jobSpecSchema = z.object({
  language: z.string(),
  version: z.string().nullable(),
  /** The program as one source text, or null when `files` carry it. */
  code: z.string().nullable(),
  files: z.array(jobFileSchema),
  entrypoint: workspacePathSchema.nullable(),
  stdin: z.string().nullable(),
  /** The program's stdin stays open for writes through the runner's signed endpoint; absent = closed. */
  stdin_open: z.boolean().optional(),
  args: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  limits: limitsSchema,
  network: networkRulesSchema,
  artifacts: artifactRulesSchema,
  collect: z.array(leasedCollectGlobSchema),
  /** The compile step's own limits (already within the policy); absent in specs from before them. */
  compile_limits: compileLimitsSchema.optional(),
  compiler_options: z.string().max(512).optional(),
});
export type JobSpec = z.infer<typeof jobSpecSchema>;

export const leasedJobSchema = z.object({
  job_id: z.string(),
  tenant_id: z.string(),
  attempt: z.number().int(),
  sandbox_id: z.string(),
  lease_expires_at: z.string(),
  spec: jobSpecSchema,
});
export type LeasedJob = z.infer<typeof leasedJobSchema>;

export const leaseResponseSchema = z.object({ leases: z.array(leasedJobSchema) });
export type LeaseResponse = z.infer<typeof leaseResponseSchema>;

export const jobEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('started') }),
  z.strictObject({
    type: z.literal('output'),
    stream: z.enum(['stdout', 'stderr']),
    /** base64, since output need not be UTF-8. */
    data_base64: z.string().max(1024 * 1024),
  }),
  /**
   * Output the runner could not deliver live (a batch the control plane refused, or more output than
   * the runner may hold while the control plane is slow): watchers are told in-band, and it is counted.
   * The job's stdout/stderr artifacts still hold everything.
   */
  z.strictObject({
    type: z.literal('output_lost'),
    stream: z.enum(['stdout', 'stderr']),
    bytes: z.number().int().nonnegative().max(2 ** 48),
    reason: z.enum(['runner_refused', 'runner_backlog']),
  }),
]);
export type JobEvent = z.infer<typeof jobEventSchema>;

export const jobEventsReportSchema = z.strictObject({
  attempt: z.number().int().min(1),
  events: z.array(jobEventSchema).min(1).max(256),
});
export type JobEventsReport = z.infer<typeof jobEventsReportSchema>;

/** A blob the runner uploaded (PUT …/blobs) and now names in its completion report. */
export const uploadedBlobSchema = z.strictObject({
  checksum: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size_bytes: z.number().int().nonnegative(),
});
export type UploadedBlob = z.infer<typeof uploadedBlobSchema>;

/** Blobs up to this size travel inside the completion report instead of a separate upload. */
export const INLINE_BLOB_MAX_BYTES = 64 * 1024;

/** A blob in a completion report: uploaded before (checksum and size), or small and carried inline. */
export const reportedBlobSchema = uploadedBlobSchema.extend({
  content_base64: z.string().max(Math.ceil(INLINE_BLOB_MAX_BYTES / 3) * 4).optional(),
});
export type ReportedBlob = z.infer<typeof reportedBlobSchema>;

/** Longest artifact name (its path under /workspace) a report may carry; longer files are not collected. */
export const ARTIFACT_NAME_MAX_LENGTH = 1024;

const liveByteCount = z.number().int().nonnegative().max(2 ** 48);

export const completionReportSchema = z.strictObject({
  attempt: z.number().int().min(1),
  verdict: verdictSchema,
  exit_status: exitStatusSchema,
  resource_usage: resourceUsageSchema,
  stdout: reportedBlobSchema,
  stderr: reportedBlobSchema,
  artifacts: z
    .array(reportedBlobSchema.extend({ name: z.string().min(1).max(ARTIFACT_NAME_MAX_LENGTH) }))
    .max(10_000),
  rejected_artifacts: z
    .array(z.strictObject({ name: z.string().max(ARTIFACT_NAME_MAX_LENGTH), size_bytes: z.number().int().nonnegative(), reason: z.string().max(512) }))
    .max(10_000)
    .default([]),
  /** For system_error: what went wrong on the node (kept for operators). */
  error: z.string().max(4096).nullable().default(null),
  /** What the sandbox did through the egress proxy; null when the policy allows no egress. */
  egress: egressSummarySchema.nullable().default(null),
  /** A compiled language's compile step (output cut at COMPILE_OUTPUT_MAX_BYTES per stream). */
  compile: compileResultSchema
    .extend({ stdout: z.string().max(COMPILE_OUTPUT_MAX_BYTES), stderr: z.string().max(COMPILE_OUTPUT_MAX_BYTES) })
    .nullable()
    .default(null),
  /**
   * Bytes of each stream, from its start, that the runner's events carried (or announced lost). The
   * rest the control plane feeds to live watchers from the inline copy before it announces the end, so
   * output still pending when a short job ends costs no events request. Absent (older runners): the
   * events carried everything.
   */
  live_bytes: z.strictObject({ stdout: liveByteCount, stderr: liveByteCount }).optional(),
});
export type CompletionReport = z.infer<typeof completionReportSchema>;
