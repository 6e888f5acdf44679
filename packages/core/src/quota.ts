import { z } from 'zod';
import { limitsSchema } from './limits.js';
import { artifactRulesSchema, concurrencyRulesSchema, sessionRulesSchema, serviceRulesSchema } from './policy.js';

const GiB = 1024 ** 3;

/**
 * A tenant's quota: the operator's bounds on that tenant. The sections named like a ruleset's
 * (`limits`, `artifacts`, `sessions`, `services`, `concurrency`) are ceilings every policy version is
 * checked against when it is published; the rest bound the tenant's traffic and storage.
 */
export const tenantQuotaSchema = z.strictObject({
  limits: limitsSchema.required(),
  artifacts: artifactRulesSchema,
  sessions: sessionRulesSchema.pick({ max_ttl_seconds: true, max_active: true }),
  services: serviceRulesSchema.pick({ max_running: true }),
  concurrency: z.strictObject({
    max_running_jobs: concurrencyRulesSchema.shape.max_running_jobs,
    /** jobs submitted and not yet running; one more is 429 RATE_LIMITED */
    max_queued_jobs: z.number().int().min(1).max(1_000_000),
  }),
  /** Mutating requests (POST, PUT, PATCH, DELETE) per tenant or agent key: a token bucket. */
  rate_limit: z.strictObject({
    requests_per_second: z.number().min(0.01).max(100_000),
    burst: z.number().int().min(1).max(1_000_000),
  }),
  /** Bytes of artifacts the tenant may keep stored (enforced by retention). */
  artifact_storage_bytes: z.number().int().min(0).max(1024 * 1024 * GiB),
});
export type TenantQuota = z.infer<typeof tenantQuotaSchema>;

const sections = tenantQuotaSchema.shape;

/**
 * `PUT /v1/tenants/{id}/quota`: the operator's overrides. It replaces the previous overrides; every
 * value left out follows the configured default (KILN_QUOTA_*).
 */
export const tenantQuotaOverridesSchema = z.strictObject({
  limits: sections.limits.partial().optional(),
  artifacts: sections.artifacts.partial().optional(),
  sessions: sections.sessions.partial().optional(),
  services: sections.services.partial().optional(),
  concurrency: sections.concurrency.partial().optional(),
  rate_limit: sections.rate_limit.partial().optional(),
  artifact_storage_bytes: sections.artifact_storage_bytes.optional(),
});
export type TenantQuotaOverrides = z.infer<typeof tenantQuotaOverridesSchema>;

/** A tenant's quota as the API answers it: the values in force, and which of them the operator set. */
export const tenantQuotaViewSchema = tenantQuotaSchema.extend({
  tenant_id: z.string(),
  overrides: tenantQuotaOverridesSchema,
  updated_at: z.string().nullable().describe('when the operator last set the overrides; null: defaults only'),
});
export type TenantQuotaView = z.infer<typeof tenantQuotaViewSchema>;

/**
 * The built-in defaults (the configuration's KILN_QUOTA_* variables override them): generous for one
 * tenant on a 2-core, 24 GiB node, far below what the ruleset schema would accept.
 */
export const DEFAULT_TENANT_QUOTA: TenantQuota = {
  limits: {
    cpu_time_ms: 5 * 60 * 1000,
    wall_time_ms: 15 * 60 * 1000,
    memory_bytes: 4 * GiB,
    pids: 1024,
    output_bytes: 64 * 1024 * 1024,
    file_size_bytes: 1 * GiB,
    disk_bytes: 4 * GiB,
    open_files: 4096,
  },
  artifacts: { max_count: 1000, max_bytes: 1 * GiB, max_total_bytes: 4 * GiB },
  sessions: { max_ttl_seconds: 24 * 3600, max_active: 50 },
  services: { max_running: 10 },
  concurrency: { max_running_jobs: 50, max_queued_jobs: 1000 },
  rate_limit: { requests_per_second: 100, burst: 400 },
  artifact_storage_bytes: 10 * GiB,
};

/** The quota in force: the defaults with the operator's overrides laid over them, section by section. */
export function applyQuotaOverrides(defaults: TenantQuota, overrides: TenantQuotaOverrides): TenantQuota {
  return {
    limits: { ...defaults.limits, ...overrides.limits },
    artifacts: { ...defaults.artifacts, ...overrides.artifacts },
    sessions: { ...defaults.sessions, ...overrides.sessions },
    services: { ...defaults.services, ...overrides.services },
    concurrency: { ...defaults.concurrency, ...overrides.concurrency },
    rate_limit: { ...defaults.rate_limit, ...overrides.rate_limit },
    artifact_storage_bytes: overrides.artifact_storage_bytes ?? defaults.artifact_storage_bytes,
  };
}
