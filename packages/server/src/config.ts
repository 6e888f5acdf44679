import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KilnError, parseOrThrow } from '@kiln/core';
import { z } from 'zod';
import { newOperatorKey } from './domain/keys.js';

const secret = z.string().min(16, 'must be at least 16 characters').max(512);

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
  /** Largest request body accepted; bigger is 413. @default 1048576 */
  KILN_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).max(1024 ** 3).default(1024 * 1024),
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
});

/** The compiled configuration: every value resolved, every unit in its name. */
export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  adminKey: string | undefined;
  runnerToken: string | undefined;
  bodyLimitBytes: number;
  logLevel: z.infer<typeof serverEnvSchema>['KILN_LOG_LEVEL'];
  artifactsUrl: string | undefined;
  s3: { endpoint?: string; region?: string; accessKeyId?: string; secretAccessKey?: string };
  heartbeatIntervalMs: number;
  leaseTtlMs: number;
  runnerDegradedAfterMs: number;
  runnerOfflineAfterMs: number;
  jobMaxAttempts: number;
  jobMaxWaitMs: number;
  liveOutputMaxBytesPerJob: number;
  streamMaxWatchersPerJob: number;
  streamMaxWatchersPerKey: number;
  streamMaxWatchersPerTenant: number;
  streamWatcherBufferBytes: number;
  streamStallTimeoutMs: number;
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
    bodyLimitBytes: parsed.KILN_BODY_LIMIT_BYTES,
    logLevel: parsed.KILN_LOG_LEVEL,
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
    liveOutputMaxBytesPerJob: parsed.KILN_LIVE_OUTPUT_MAX_BYTES_PER_JOB,
    streamMaxWatchersPerJob: parsed.KILN_STREAM_MAX_WATCHERS_PER_JOB,
    streamMaxWatchersPerKey: parsed.KILN_STREAM_MAX_WATCHERS_PER_KEY,
    streamMaxWatchersPerTenant: parsed.KILN_STREAM_MAX_WATCHERS_PER_TENANT,
    streamWatcherBufferBytes: parsed.KILN_STREAM_WATCHER_BUFFER_BYTES,
    streamStallTimeoutMs: parsed.KILN_STREAM_STALL_TIMEOUT_MS,
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
    s3: { ...config.s3, secretAccessKey: config.s3.secretAccessKey ? '[redacted]' : undefined },
  };
}

/** Where the generated operator key is kept. */
export function adminKeyFile(dataDir: string): string {
  return join(dataDir, 'admin.key');
}

export interface ResolvedAdminKey {
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
  const file = adminKeyFile(config.dataDir);
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length < 16) throw new Error(`${file} does not hold an operator key; delete it to generate a new one`);
    return { key, file, generated: false };
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const key = newOperatorKey();
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { key, file, generated: true };
}
