import { z } from 'zod';
import { rulesetSchema } from './policy.js';
import { decimalIntegerQuery } from './validation.js';

/**
 * Request and response schemas of the control-plane API (ARCHITECTURE.md §5), shared by the server
 * (validation, OpenAPI) and the SDK (types). Request bodies are strict: an unknown field is an error.
 */

const rfc3339 = z.string().describe('RFC 3339 time, UTC');

/** Text a person typed: no control characters (PostgreSQL refuses NUL, and logs should stay readable). */
export const plainTextSchema = z.string().regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');
const name = plainTextSchema.trim().min(1).max(128);
/** An id or word used to filter a list: letters, digits and `_ . : -`. */
const filterText = z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/, 'must be an id or a word such as "policy.publish"');

/** Every list answers `{items, next_cursor}`; `next_cursor` is null on the last page. */
export function listOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() });
}

/** `?limit=&cursor=` of every list. */
export const listQuerySchema = z.strictObject({
  limit: decimalIntegerQuery(1, 200).default(50).describe('page size, 1 to 200 (default 50)'),
  cursor: z.string().min(1).max(512).optional().describe('opaque: the `next_cursor` of the previous page, as it was given'),
});
export type ListQuery = z.infer<typeof listQuerySchema>;

// --- tenants -------------------------------------------------------------------------------------

export const TENANT_STATUSES = ['active', 'suspended'] as const;
export const tenantStatusSchema = z.enum(TENANT_STATUSES);
export type TenantStatus = z.infer<typeof tenantStatusSchema>;

export const tenantSchema = z.object({
  id: z.string(),
  name: z.string(),
  status: tenantStatusSchema,
  created_at: rfc3339,
}).meta({ id: 'Tenant' });
export type Tenant = z.infer<typeof tenantSchema>;

export const createTenantBodySchema = z.strictObject({ name });
export const patchTenantBodySchema = z.strictObject({ status: tenantStatusSchema });

// --- agents --------------------------------------------------------------------------------------

export const AGENT_STATUSES = ['active', 'disabled'] as const;
export const agentStatusSchema = z.enum(AGENT_STATUSES);
export type AgentStatus = z.infer<typeof agentStatusSchema>;

export const agentTypeSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, 'must be a short lower-case word such as "assistant"');

export const agentSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  name: z.string(),
  type: z.string(),
  status: agentStatusSchema,
  created_at: rfc3339,
}).meta({ id: 'Agent' });
export type Agent = z.infer<typeof agentSchema>;

export const createAgentBodySchema = z.strictObject({ name, type: agentTypeSchema.default('assistant') });
export const patchAgentBodySchema = z.strictObject({ status: agentStatusSchema });

// --- keys ----------------------------------------------------------------------------------------

export const KEY_KINDS = ['operator', 'tenant', 'agent'] as const;
export const keyKindSchema = z.enum(KEY_KINDS);
export type KeyKind = z.infer<typeof keyKindSchema>;

/** A key as listed; the secret `key` is present only in the answer that creates it. */
export const apiKeySchema = z.object({
  id: z.string(),
  kind: keyKindSchema,
  tenant_id: z.string().nullable(),
  agent_id: z.string().nullable(),
  created_at: rfc3339,
  revoked_at: rfc3339.nullable(),
  prefix: z.string().describe('the key up to its secret (`kiln_agent_key_…_`): recognises a key, cannot be used as one'),
  last_used_at: rfc3339.nullable().describe('when the key last authenticated a request, to the minute; null if never'),
  key: z.string().optional().describe('the secret, shown once'),
}).meta({ id: 'ApiKey' });

/** `GET /v1/keys`: the operator may narrow to one tenant. */
export const listKeysQuerySchema = listQuerySchema.extend({
  tenant_id: filterText.optional().describe('operator only: the keys of this tenant'),
});
export type ApiKey = z.infer<typeof apiKeySchema>;

export const createKeyBodySchema = z.strictObject({});

// --- policies ------------------------------------------------------------------------------------

export const policyNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, 'must be a short lower-case name such as "default"');

export const policySchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  name: z.string(),
  version: z.number().int(),
  ruleset: rulesetSchema,
  created_at: rfc3339,
  updated_at: rfc3339,
}).meta({ id: 'Policy' });
export type Policy = z.infer<typeof policySchema>;

export const policyVersionSchema = z.object({
  policy_id: z.string(),
  version: z.number().int(),
  ruleset: rulesetSchema,
  created_at: rfc3339,
  created_by: z.string(),
}).meta({ id: 'PolicyVersion' });
export type PolicyVersion = z.infer<typeof policyVersionSchema>;

/** Creating a policy makes version 1; without a ruleset it starts from the default ruleset. */
export const createPolicyBodySchema = z.strictObject({ name: policyNameSchema, ruleset: rulesetSchema.optional() });
/** Publishing makes version `expected_version + 1`, or answers 409 when someone published first. */
export const publishPolicyBodySchema = z.strictObject({
  ruleset: rulesetSchema,
  expected_version: z.number().int().min(1),
});

// --- audit ---------------------------------------------------------------------------------------

export const AUDIT_OUTCOMES = ['success', 'denied', 'error'] as const;
export const auditOutcomeSchema = z.enum(AUDIT_OUTCOMES);
export type AuditOutcome = z.infer<typeof auditOutcomeSchema>;

export const auditEventSchema = z.object({
  id: z.string(),
  tenant_id: z.string().nullable(),
  actor_id: z.string(),
  action: z.string(),
  resource_type: z.string(),
  resource_id: z.string().nullable(),
  timestamp: rfc3339,
  outcome: auditOutcomeSchema,
  details: z.record(z.string(), z.unknown()),
  /** the agent the event belongs to (the acting agent, or the agent whose job… it is); what an agent key sees */
  subject_agent_id: z.string().nullable(),
  prev_hash: z.string(),
  /** HMAC-SHA256 with the audit key (SHA-256 for events written before the key existed) */
  hash: z.string(),
}).meta({ id: 'AuditEvent' });
export type AuditEvent = z.infer<typeof auditEventSchema>;

const timeQuery = z.iso.datetime({ offset: true });

export const auditQuerySchema = listQuerySchema.extend({
  tenant_id: filterText.optional().describe('operator only: one tenant, or "none" for operator-level events'),
  actor_id: filterText.optional(),
  action: filterText.optional(),
  resource_type: filterText.optional(),
  resource_id: filterText.optional(),
  outcome: auditOutcomeSchema.optional(),
  since: timeQuery.optional(),
  until: timeQuery.optional(),
});
export type AuditQuery = z.infer<typeof auditQuerySchema>;

export const auditVerifyQuerySchema = z.strictObject({
  tenant_id: filterText.optional().describe('operator only: which chain ("none" = operator-level)'),
});

export const auditVerifyResultSchema = z.object({
  ok: z.boolean(),
  /** events checked, from the first */
  count: z.number().int(),
  /** the audit key events are checked against (a name derived from it, not the key) */
  key_id: z.string(),
  /** the first event signed with the audit key; earlier ones predate it and carry only the unkeyed SHA-256 chain */
  keyed_from_seq: z.number().int().nullable(),
  /** the signed checkpoint (kept outside the database) the chain was checked against: truncation below it is caught */
  checkpoint: z.object({ seq: z.number().int(), hash: z.string(), at: z.string() }).nullable(),
  broken_event_id: z.string().optional(),
  reason: z.string().optional(),
});
export type AuditVerifyResult = z.infer<typeof auditVerifyResultSchema>;

// --- languages -----------------------------------------------------------------------------------

export const languageOfferSchema = z.object({
  name: z.string(),
  /** Every version some runner offers, highest first (a job's `version` range picks among them). */
  versions: z.array(z.string()),
  /** Other names a job may give for it (`py`, `c++`, `ts`). */
  aliases: z.array(z.string()),
  /** Libraries installed for it that programs may import (`numpy`, `typescript`), on every runner that offers them. */
  libraries: z.array(z.string()),
  /** Each version with the toolchain behind it, where the catalog has several (`gcc`, `clang`). */
  runtimes: z.array(z.object({ version: z.string(), runtime: z.string().nullable() })),
  runners: z.number().int(),
});
export type LanguageOffer = z.infer<typeof languageOfferSchema>;
