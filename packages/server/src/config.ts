import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_TENANT_QUOTA as Q, KilnError, parseOrThrow, tenantQuotaSchema, type TenantQuota } from '@kiln/core';
import { z } from 'zod';
import { assertPrivate } from './data-dir.js';
import { newOperatorKey } from './domain/keys.js';
import type { AuthRefusalLimits } from './services/auth-refusals.js';
import { parseSecretsKey, SECRETS_KEY_BYTES } from './domain/secret-box.js';

const secret = z.string().min(16, 'must be at least 16 characters').max(512);

/** A default of the tenant quota: a number bounded as the quota's field is. */
function quotaVar(field: z.ZodType<number, number>, fallback: number) {
  return z.coerce.number().pipe(field).default(fallback);
}
const quota = tenantQuotaSchema.shape;

/**
 * The control plane's environment: one zod schema over KILN_* variables, parsed once at start.
 * Units are in the names.
 */
export const serverEnvSchema = z.object({
  /** @default 8080 */
  KILN_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** @default 127.0.0.1 */
  KILN_HOST: z.string().min(1).default('127.0.0.1'),
  /** SQLite file, generated operator key and local artifacts live here. @default ./.kiln */
  KILN_DATA_DIR: z.string().min(1).default('./.kiln'),
  /** `postgres://…` to use PostgreSQL instead of SQLite in the data dir. */
  KILN_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  /** The operator key; generated into the data dir on first start when unset. */
  KILN_ADMIN_KEY: secret.optional(),
  /** The shared token runners present on /v1/runner/*; runners are refused when unset. */
  KILN_RUNNER_TOKEN: secret.optional(),
  /**
   * The key that seals jobs' `secret_env` at rest (AES-256-GCM): 64 hex digits or base64 of 32 bytes.
   * Every replica needs the same one. @default generated into `<data dir>/secrets.key` (mode 0600)
   */
  KILN_SECRETS_KEY: z
    .string()
    .refine((v) => parseSecretsKey(v) !== undefined, 'must be 32 bytes: 64 hex digits or base64')
    .optional(),
  /** Largest request body accepted; bigger is 413. @default 1048576 */
  KILN_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).max(1024 ** 3).default(1024 * 1024),
  /** `pretty` (one readable line per event) or `json` (one JSON object per line). @default pretty on a terminal, else json */
  KILN_LOG_FORMAT: z.enum(['pretty', 'json']).optional(),
  /** @default info */
  KILN_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Where artifacts go: `s3://bucket/prefix`, or a folder. @default <data dir>/artifacts */
  KILN_ARTIFACTS_URL: z.string().min(1).optional(),
  /** An S3-compatible endpoint for `s3://` artifacts (MinIO, Ceph…); unset for AWS. */
  KILN_S3_ENDPOINT: z.url().optional(),
  /** @default us-east-1 */
  KILN_S3_REGION: z.string().min(1).optional(),
  KILN_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  KILN_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** How often runners heartbeat. @default 1000 */
  KILN_HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(100).max(60_000).default(1000),
  /** A lease not extended for this long is lost and its job requeued. @default 15000 */
  KILN_LEASE_TTL_MS: z.coerce.number().int().min(1000).max(3_600_000).default(15_000),
  /** No heartbeat for this long: the runner is degraded (no new placements). @default 3000 */
  KILN_RUNNER_DEGRADED_AFTER_MS: z.coerce.number().int().min(200).max(3_600_000).default(3000),
  /** No heartbeat for this long: offline; its sandboxes fail and its jobs are requeued. @default 10000 */
  KILN_RUNNER_OFFLINE_AFTER_MS: z.coerce.number().int().min(500).max(3_600_000).default(10_000),
  /** Attempts a job gets when runners are lost under it. @default 3 */
  KILN_JOB_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(3),
  /** The longest `POST /v1/jobs?wait=true` blocks. @default 60000 */
  KILN_JOB_MAX_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(60_000),

  // Defaults of every tenant's quota; the operator overrides them per tenant (PUT /v1/tenants/{id}/quota).
  // The limits, artifact, session, service and concurrency values are ceilings policies are checked against.
  /** @default 300000 (5 min) */
  KILN_QUOTA_CPU_TIME_MS: quotaVar(quota.limits.shape.cpu_time_ms, Q.limits.cpu_time_ms),
  /** @default 900000 (15 min) */
  KILN_QUOTA_WALL_TIME_MS: quotaVar(quota.limits.shape.wall_time_ms, Q.limits.wall_time_ms),
  /** @default 4294967296 (4 GiB) */
  KILN_QUOTA_MEMORY_BYTES: quotaVar(quota.limits.shape.memory_bytes, Q.limits.memory_bytes),
  /** @default 1024 */
  KILN_QUOTA_PIDS: quotaVar(quota.limits.shape.pids, Q.limits.pids),
  /** @default 67108864 (64 MiB) */
  KILN_QUOTA_OUTPUT_BYTES: quotaVar(quota.limits.shape.output_bytes, Q.limits.output_bytes),
  /** @default 1073741824 (1 GiB) */
  KILN_QUOTA_FILE_SIZE_BYTES: quotaVar(quota.limits.shape.file_size_bytes, Q.limits.file_size_bytes),
  /** @default 4294967296 (4 GiB) */
  KILN_QUOTA_DISK_BYTES: quotaVar(quota.limits.shape.disk_bytes, Q.limits.disk_bytes),
  /** @default 4096 */
  KILN_QUOTA_OPEN_FILES: quotaVar(quota.limits.shape.open_files, Q.limits.open_files),
  /** Ceiling of artifacts.max_count. @default 1000 */
  KILN_QUOTA_ARTIFACT_MAX_COUNT: quotaVar(quota.artifacts.shape.max_count, Q.artifacts.max_count),
  /** Ceiling of artifacts.max_bytes. @default 1073741824 (1 GiB) */
  KILN_QUOTA_ARTIFACT_MAX_BYTES: quotaVar(quota.artifacts.shape.max_bytes, Q.artifacts.max_bytes),
  /** Ceiling of artifacts.max_total_bytes. @default 4294967296 (4 GiB) */
  KILN_QUOTA_ARTIFACT_MAX_TOTAL_BYTES: quotaVar(quota.artifacts.shape.max_total_bytes, Q.artifacts.max_total_bytes),
  /** Ceiling of sessions.max_ttl_seconds. @default 86400 (24 h) */
  KILN_QUOTA_SESSION_MAX_TTL_SECONDS: quotaVar(quota.sessions.shape.max_ttl_seconds, Q.sessions.max_ttl_seconds),
  /** Ceiling of sessions.max_active. @default 50 */
  KILN_QUOTA_SESSIONS_MAX_ACTIVE: quotaVar(quota.sessions.shape.max_active, Q.sessions.max_active),
  /** Ceiling of services.max_running. @default 10 */
  KILN_QUOTA_SERVICES_MAX_RUNNING: quotaVar(quota.services.shape.max_running, Q.services.max_running),
  /** Ceiling of concurrency.max_running_jobs. @default 50 */
  KILN_QUOTA_MAX_RUNNING_JOBS: quotaVar(quota.concurrency.shape.max_running_jobs, Q.concurrency.max_running_jobs),
  /** Jobs a tenant may have queued (not yet running); one more is 429. @default 1000 */
  KILN_QUOTA_MAX_QUEUED_JOBS: quotaVar(quota.concurrency.shape.max_queued_jobs, Q.concurrency.max_queued_jobs),
  /** Mutating requests per second per tenant or agent key (token bucket refill). @default 100 */
  KILN_QUOTA_RATE_PER_SECOND: quotaVar(quota.rate_limit.shape.requests_per_second, Q.rate_limit.requests_per_second),
  /** Mutating requests a key may send at once (token bucket size). @default 400 */
  KILN_QUOTA_RATE_BURST: quotaVar(quota.rate_limit.shape.burst, Q.rate_limit.burst),
  /** Bytes of artifacts a tenant may keep (enforced by retention). @default 10737418240 (10 GiB) */
  KILN_QUOTA_ARTIFACT_STORAGE_BYTES: quotaVar(quota.artifact_storage_bytes, Q.artifact_storage_bytes),
  /** The audit's HMAC key (kept out of the database); generated into `<data dir>/audit.key` when unset. */
  KILN_AUDIT_KEY: secret.optional(),
  /** Where signed checkpoints of the audit chains' heads are kept. @default <data dir>/audit-checkpoints.json */
  KILN_AUDIT_CHECKPOINT_FILE: z.string().min(1).optional(),
  /** How often each audit chain's head is checkpointed. @default 10000 */
  KILN_AUDIT_CHECKPOINT_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
  /** A connection must finish sending its request headers within this. @default 10000 */
  KILN_HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** A request (headers and body) must be received within this; answers may take longer (long polls, SSE). @default 60000 */
  KILN_HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  /** An idle keep-alive connection is closed after this. @default 5000 */
  KILN_HTTP_KEEP_ALIVE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  /** Open connections at most; more are closed at once. Keep it below the process's file limit. @default 2048 */
  KILN_HTTP_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(2048),
  /** Open connections at most from one source (an IPv4 /24 or an IPv6 /64). @default 256 */
  KILN_HTTP_MAX_CONNECTIONS_PER_SOURCE: z.coerce.number().int().min(1).max(1_000_000).default(256),
  /** Requests refused for want of a valid key are audited once per source per window, with a count. @default 60000 */
  KILN_AUTH_REFUSAL_WINDOW_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
  /** Sources tracked per window; refusals from more are counted together as `other`. @default 10000 */
  KILN_AUTH_REFUSAL_MAX_SOURCES: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  /**
   * Bytes of artifacts (outputs included) each tenant may hold; past it new artifacts are refused and
   * uploads cut short. Until tenant quota records exist, every tenant gets this. @default 10737418240 (10 GiB)
  /** Artifacts older than this are deleted; 0 keeps them forever. @default 604800 (7 days) */
  KILN_ARTIFACT_RETENTION_SECONDS: z.coerce.number().int().min(0).max(100 * 365 * 86_400).default(7 * 86_400),
  /** Ended jobs older than this are deleted with their artifacts; 0 keeps them forever. @default 2592000 (30 days) */
  KILN_JOB_RETENTION_SECONDS: z.coerce.number().int().min(0).max(100 * 365 * 86_400).default(30 * 86_400),
  /** The URL clients reach the control plane at: the base of every service `proxy_url`. @default the listening URL */
  KILN_PUBLIC_URL: z.url().optional(),
  /** A wildcard domain: `{service id}.{domain}` reaches the service by its Host header (same scheme and port). */
  KILN_SERVICES_DOMAIN: z
    .string()
    .regex(/^(?=.{1,200}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i, 'must be a domain such as services.example.com')
    .optional(),
  /** A proxied request whose answer has not begun within this is 504. @default 30000 */
  KILN_SERVICES_UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  /** How long an allowed proxy access decision is reused per replica (revocation takes effect within it); 0 disables. @default 1000 */
  KILN_SERVICES_ACCESS_CACHE_MS: z.coerce.number().int().min(0).max(10_000).default(1000),
  /** Output of a running job kept in memory for watchers that join late (per replica). @default 1048576 */
  KILN_LIVE_OUTPUT_MAX_BYTES_PER_JOB: z.coerce.number().int().min(0).max(64 * 1024 ** 2).default(1024 * 1024),
  /** Event streams open at once on one job (per replica); more is 429 RATE_LIMITED. @default 32 */
  KILN_STREAM_MAX_WATCHERS_PER_JOB: z.coerce.number().int().min(1).max(100_000).default(32),
  /** Event streams one key holds open at once (per replica); more is 429 RATE_LIMITED. @default 16 */
  KILN_STREAM_MAX_WATCHERS_PER_KEY: z.coerce.number().int().min(1).max(100_000).default(16),
  /** Event streams one tenant holds open at once, over all its keys (per replica). @default 64 */
  KILN_STREAM_MAX_WATCHERS_PER_TENANT: z.coerce.number().int().min(1).max(100_000).default(64),
  /** Bytes one event stream may hold that its reader has not taken; past it, its output is cut. @default 262144 */
  KILN_STREAM_WATCHER_BUFFER_BYTES: z.coerce.number().int().min(4096).max(64 * 1024 ** 2).default(256 * 1024),
  /** An event stream whose reader takes nothing for this long is closed. @default 30000 */
  KILN_STREAM_STALL_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  /** The agent key-less Piston requests (`/api/v2`) act as; without, Piston callers send a kiln key. */
  KILN_PISTON_AGENT: z.string().regex(/^agt_[A-Za-z0-9]{1,64}$/, 'must be an agent id such as "agt_01hx…"').optional(),
  /** Where Judge0 CE's API is mounted. @default /judge0 */
  KILN_JUDGE0_PREFIX: z
    .string()
    .regex(/^(\/[A-Za-z0-9._-]+)+$/, 'must be a path such as "/judge0" (no trailing slash)')
    .refine((p) => !p.startsWith('/v1') && !p.startsWith('/api/v2'), 'must not overlap kiln\'s or Piston\'s API')
    .default('/judge0'),
  /** The agent Judge0 requests without `X-Auth-Token` act as; without, a kiln key is required. */
  KILN_JUDGE0_AGENT: z.string().regex(/^agt_[A-Za-z0-9]{1,64}$/, 'must be an agent id such as "agt_01hx…"').optional(),
  /** Hosts Judge0 `callback_url`s may name, comma-separated (`hooks.example.com,*.example.org`); none by default. */
  KILN_JUDGE0_CALLBACK_HOSTS: z.string().max(4096).default(''),
});

/** The compiled configuration: every value resolved, every unit in its name. */
export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  adminKey: string | undefined;
  runnerToken: string | undefined;
  secretsKey: string | undefined;
  bodyLimitBytes: number;
  logLevel: z.infer<typeof serverEnvSchema>['KILN_LOG_LEVEL'];
  logFormat: 'pretty' | 'json' | undefined;
  artifactsUrl: string | undefined;
  s3: { endpoint?: string; region?: string; accessKeyId?: string; secretAccessKey?: string };
  heartbeatIntervalMs: number;
  leaseTtlMs: number;
  runnerDegradedAfterMs: number;
  runnerOfflineAfterMs: number;
  jobMaxAttempts: number;
  jobMaxWaitMs: number;
  /** every tenant's quota where the operator set nothing */
  quotaDefaults: TenantQuota;
  auditKey: string | undefined;
  auditCheckpointFile: string | undefined;
  auditCheckpointIntervalMs: number;
  http: HttpLimits;
  authRefusals: AuthRefusalLimits;
  artifactRetentionSeconds: number;
  jobRetentionSeconds: number;
  liveOutputMaxBytesPerJob: number;
  streamMaxWatchersPerJob: number;
  streamMaxWatchersPerKey: number;
  streamMaxWatchersPerTenant: number;
  streamWatcherBufferBytes: number;
  streamStallTimeoutMs: number;
  publicUrl: string | undefined;
  servicesDomain: string | undefined;
  servicesUpstreamTimeoutMs: number;
  servicesAccessCacheMs: number;
  /** The compatibility faces (Piston at /api/v2, Judge0 CE at `judge0Prefix`). */
  compat: CompatConfig;
}

export interface CompatConfig {
  pistonAgentId: string | undefined;
  judge0Prefix: string;
  judge0AgentId: string | undefined;
  /** host names (or `*.suffix`) Judge0 callbacks may reach */
  judge0CallbackHosts: string[];
}

/** What the HTTP server allows a connection (slow or half-sent requests are cut, connections capped). */
export interface HttpLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerSource: number;
}


/**
 * Reads the configuration from `env` (normally process.env); `overrides` (command-line flags) win over
 * the variables. Bad values are VALIDATION_FAILED naming the variable.
 */
export function loadServerConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<ServerConfig> = {},
): ServerConfig {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(serverEnvSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const parsed = parseOrThrow(serverEnvSchema, picked, 'env');
  const config: ServerConfig = {
    port: parsed.KILN_PORT,
    host: parsed.KILN_HOST,
    dataDir: parsed.KILN_DATA_DIR,
    databaseUrl: parsed.KILN_DATABASE_URL,
    adminKey: parsed.KILN_ADMIN_KEY,
    runnerToken: parsed.KILN_RUNNER_TOKEN,
    secretsKey: parsed.KILN_SECRETS_KEY,
    bodyLimitBytes: parsed.KILN_BODY_LIMIT_BYTES,
    logLevel: parsed.KILN_LOG_LEVEL,
    logFormat: parsed.KILN_LOG_FORMAT,
    artifactsUrl: parsed.KILN_ARTIFACTS_URL,
    s3: {
      ...(parsed.KILN_S3_ENDPOINT ? { endpoint: parsed.KILN_S3_ENDPOINT } : {}),
      ...(parsed.KILN_S3_REGION ? { region: parsed.KILN_S3_REGION } : {}),
      ...(parsed.KILN_S3_ACCESS_KEY_ID ? { accessKeyId: parsed.KILN_S3_ACCESS_KEY_ID } : {}),
      ...(parsed.KILN_S3_SECRET_ACCESS_KEY ? { secretAccessKey: parsed.KILN_S3_SECRET_ACCESS_KEY } : {}),
    },
    heartbeatIntervalMs: parsed.KILN_HEARTBEAT_INTERVAL_MS,
    leaseTtlMs: parsed.KILN_LEASE_TTL_MS,
    runnerDegradedAfterMs: parsed.KILN_RUNNER_DEGRADED_AFTER_MS,
    runnerOfflineAfterMs: parsed.KILN_RUNNER_OFFLINE_AFTER_MS,
    jobMaxAttempts: parsed.KILN_JOB_MAX_ATTEMPTS,
    jobMaxWaitMs: parsed.KILN_JOB_MAX_WAIT_MS,
    quotaDefaults: {
      limits: {
        cpu_time_ms: parsed.KILN_QUOTA_CPU_TIME_MS,
        wall_time_ms: parsed.KILN_QUOTA_WALL_TIME_MS,
        memory_bytes: parsed.KILN_QUOTA_MEMORY_BYTES,
        pids: parsed.KILN_QUOTA_PIDS,
        output_bytes: parsed.KILN_QUOTA_OUTPUT_BYTES,
        file_size_bytes: parsed.KILN_QUOTA_FILE_SIZE_BYTES,
        disk_bytes: parsed.KILN_QUOTA_DISK_BYTES,
        open_files: parsed.KILN_QUOTA_OPEN_FILES,
      },
      artifacts: {
        max_count: parsed.KILN_QUOTA_ARTIFACT_MAX_COUNT,
        max_bytes: parsed.KILN_QUOTA_ARTIFACT_MAX_BYTES,
        max_total_bytes: parsed.KILN_QUOTA_ARTIFACT_MAX_TOTAL_BYTES,
      },
      sessions: { max_ttl_seconds: parsed.KILN_QUOTA_SESSION_MAX_TTL_SECONDS, max_active: parsed.KILN_QUOTA_SESSIONS_MAX_ACTIVE },
      services: { max_running: parsed.KILN_QUOTA_SERVICES_MAX_RUNNING },
      concurrency: { max_running_jobs: parsed.KILN_QUOTA_MAX_RUNNING_JOBS, max_queued_jobs: parsed.KILN_QUOTA_MAX_QUEUED_JOBS },
      rate_limit: { requests_per_second: parsed.KILN_QUOTA_RATE_PER_SECOND, burst: parsed.KILN_QUOTA_RATE_BURST },
      artifact_storage_bytes: parsed.KILN_QUOTA_ARTIFACT_STORAGE_BYTES,
    },
    auditKey: parsed.KILN_AUDIT_KEY,
    auditCheckpointFile: parsed.KILN_AUDIT_CHECKPOINT_FILE,
    auditCheckpointIntervalMs: parsed.KILN_AUDIT_CHECKPOINT_INTERVAL_MS,
    http: {
      headersTimeoutMs: parsed.KILN_HTTP_HEADERS_TIMEOUT_MS,
      // Node refuses a request timeout shorter than the headers timeout.
      requestTimeoutMs: Math.max(parsed.KILN_HTTP_REQUEST_TIMEOUT_MS, parsed.KILN_HTTP_HEADERS_TIMEOUT_MS),
      keepAliveTimeoutMs: parsed.KILN_HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: parsed.KILN_HTTP_MAX_CONNECTIONS,
      maxConnectionsPerSource: parsed.KILN_HTTP_MAX_CONNECTIONS_PER_SOURCE,
    },
    authRefusals: { windowMs: parsed.KILN_AUTH_REFUSAL_WINDOW_MS, maxSources: parsed.KILN_AUTH_REFUSAL_MAX_SOURCES },
    artifactRetentionSeconds: parsed.KILN_ARTIFACT_RETENTION_SECONDS,
    jobRetentionSeconds: parsed.KILN_JOB_RETENTION_SECONDS,
    liveOutputMaxBytesPerJob: parsed.KILN_LIVE_OUTPUT_MAX_BYTES_PER_JOB,
    streamMaxWatchersPerJob: parsed.KILN_STREAM_MAX_WATCHERS_PER_JOB,
    streamMaxWatchersPerKey: parsed.KILN_STREAM_MAX_WATCHERS_PER_KEY,
    streamMaxWatchersPerTenant: parsed.KILN_STREAM_MAX_WATCHERS_PER_TENANT,
    streamWatcherBufferBytes: parsed.KILN_STREAM_WATCHER_BUFFER_BYTES,
    streamStallTimeoutMs: parsed.KILN_STREAM_STALL_TIMEOUT_MS,
    publicUrl: parsed.KILN_PUBLIC_URL,
    servicesDomain: parsed.KILN_SERVICES_DOMAIN,
    servicesUpstreamTimeoutMs: parsed.KILN_SERVICES_UPSTREAM_TIMEOUT_MS,
    servicesAccessCacheMs: parsed.KILN_SERVICES_ACCESS_CACHE_MS,
    compat: {
      pistonAgentId: parsed.KILN_PISTON_AGENT,
      judge0Prefix: parsed.KILN_JUDGE0_PREFIX,
      judge0AgentId: parsed.KILN_JUDGE0_AGENT,
      judge0CallbackHosts: parsed.KILN_JUDGE0_CALLBACK_HOSTS.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== ''),
    },
  };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value;
  }
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new KilnError('VALIDATION_FAILED', `port ${config.port} is not a TCP port (0-65535)`, { field: 'port' });
  }
  config.dataDir = resolve(config.dataDir);
  return config;
}

/** The configuration as it may be logged: secrets and database credentials replaced. */
export function redactConfig(config: ServerConfig): Record<string, unknown> {
  let databaseUrl: string | undefined;
  if (config.databaseUrl) {
    try {
      const url = new URL(config.databaseUrl);
      if (url.password) url.password = 'redacted';
      databaseUrl = url.toString();
    } catch {
      databaseUrl = '[redacted]';
    }
  }
  return {
    ...config,
    databaseUrl,
    adminKey: config.adminKey ? '[redacted]' : undefined,
    runnerToken: config.runnerToken ? '[redacted]' : undefined,
    auditKey: config.auditKey ? '[redacted]' : undefined,
    secretsKey: config.secretsKey ? '[redacted]' : undefined,
    s3: { ...config.s3, secretAccessKey: config.s3.secretAccessKey ? '[redacted]' : undefined },
  };
}

/** Where the generated operator key is kept. */
export function adminKeyFile(dataDir: string): string {
  return join(dataDir, 'admin.key');
}

/** The operator key (and the audit key) as resolved at start. */
export type ResolvedAdminKey = ResolvedSecret;

export interface ResolvedSecret {
  key: string;
  /** the file it was read from or written to; undefined when it came from KILN_ADMIN_KEY */
  file: string | undefined;
  /** true only on the start that created it (the one time it is printed) */
  generated: boolean;
}

/**
 * The operator key: KILN_ADMIN_KEY if set, else the one in `<data dir>/admin.key`, else a new one
 * written there with mode 0600.
 */
export function resolveAdminKey(config: ServerConfig): ResolvedAdminKey {
  if (config.adminKey) return { key: config.adminKey, file: undefined, generated: false };
  return secretFromFile(config.dataDir, adminKeyFile(config.dataDir), 'an operator key', newOperatorKey);
}

/** A secret kept in a file of the data dir: read it, or generate it there (mode 0600) on first start. */
function secretFromFile(dataDir: string, file: string, what: string, generate: () => string): ResolvedSecret {
  if (existsSync(file)) {
    assertPrivate(file, what);
    const key = readFileSync(file, 'utf8').trim();
    if (key.length < 16) throw new Error(`${file} does not hold ${what}; delete it to generate a new one`);
    return { key, file, generated: false };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = generate();
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { key, file, generated: true };
}

/** Where the generated audit key is kept. */
export function auditKeyFile(dataDir: string): string {
  return join(dataDir, 'audit.key');
}

/**
 * The audit's HMAC key: KILN_AUDIT_KEY if set, else `<data dir>/audit.key`, else a new one written there
 * (0600). Never in the database: a database writer without it cannot forge or re-chain events.
 */
export function resolveAuditKey(config: ServerConfig): ResolvedSecret {
  if (config.auditKey) return { key: config.auditKey, file: undefined, generated: false };
  return secretFromFile(config.dataDir, auditKeyFile(config.dataDir), 'an audit key', () => randomBytes(32).toString('base64url'));
}

/** Where the signed checkpoints of the audit chains are kept. */
export function auditCheckpointFile(config: ServerConfig): string {
  return config.auditCheckpointFile ? resolve(config.auditCheckpointFile) : join(config.dataDir, 'audit-checkpoints.json');
}

/**
 * The key that seals jobs' `secret_env`: KILN_SECRETS_KEY if set, else `<data dir>/secrets.key`, made on
 * first start with mode 0600. It lives outside the database, so a copy of the database alone reveals no
 * secret; losing it makes the sealed values of queued jobs unreadable (those jobs fail).
 */
export function resolveSecretsKey(config: ServerConfig): Buffer {
  if (config.secretsKey) return parseSecretsKey(config.secretsKey)!;
  const file = join(config.dataDir, 'secrets.key');
  if (existsSync(file)) {
    assertPrivate(file, 'the secrets key');
    const key = parseSecretsKey(readFileSync(file, 'utf8'));
    if (!key) throw new Error(`${file} does not hold a 32-byte key (64 hex digits)`);
    return key;
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(SECRETS_KEY_BYTES);
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return key;
}
