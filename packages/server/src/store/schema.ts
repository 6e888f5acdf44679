import type { Generated } from 'kysely';

/**
 * The database's tables as Kysely sees them. Times are RFC 3339 text (UTC, milliseconds) and JSON is
 * text, on SQLite and PostgreSQL alike: one encoding, so every query and test means the same on both.
 */

export interface TenantsTable {
  id: string;
  name: string;
  status: string;
  created_at: string;
  /** the claim's round-robin position: the scheduler turn at which the tenant last got a job (0: never) */
  last_served_turn: Generated<number>;
}

export interface AgentsTable {
  id: string;
  tenant_id: string;
  name: string;
  type: string;
  status: string;
  created_at: string;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string | null;
  agent_id: string | null;
  kind: string;
  /** hex SHA-256 of the secret part of the key */
  hash: string;
  created_at: string;
  revoked_at: string | null;
  /** when the key last authenticated a request; refreshed at most once a minute (migration 0012) */
  last_used_at: string | null;
}

export interface PoliciesTable {
  id: string;
  tenant_id: string;
  name: string;
  version: number;
  ruleset: string;
  created_at: string;
  updated_at: string;
}

export interface PolicyVersionsTable {
  policy_id: string;
  version: number;
  ruleset: string;
  created_at: string;
  created_by: string;
}

export interface JobsTable {
  id: string;
  tenant_id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  language: string;
  language_version: string | null;
  status: string;
  requested_at: string;
  started_at: string | null;
  completed_at: string | null;
  exit_status: string | null;
  resource_usage: string | null;
  output_refs: string | null;
  verdict: string | null;
  attempt: number;
  max_attempts: number;
  /** the whole job request as JSON (code, files, limits, env…) */
  request: string;
  zone: string | null;
  runner_id: string | null;
  lease_expires_at: string | null;
  error: string | null;
  updated_at: string;
  /** the sandbox instance of the current attempt */
  sandbox_id: string | null;
  stdout_inline: string | null;
  stderr_inline: string | null;
  /** JSON array of artifacts refused at collection, with the reason */
  rejected_artifacts: string | null;
  /** the pinned policy's running-job cap for the tenant */
  max_running_jobs: number;
  /** a compiled language's compile step as JSON (CompileResult); null when none */
  compile_result: string | null;
  /** what the job is part of (domain/job-flags.ts): a workflow step, a Judge0 run, sealed secrets */
  flags: number;
}

/** A Judge0 CE submission over its jobs (one per run). */
export interface Judge0SubmissionsTable {
  token: string;
  tenant_id: string;
  agent_id: string | null;
  language_id: number;
  /** JSON array of job ids, one per run */
  job_ids: string;
  /** JSON: what the answer needs that the jobs do not hold (expected output, flags) */
  request: string;
  callback_url: string | null;
  /** null (none), pending, sending, sent, failed */
  callback_state: string | null;
  created_at: string;
}

export interface Judge0RunsTable {
  job_id: string;
  token: string;
}

export interface SessionsTable {
  id: string;
  tenant_id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  status: string;
  ttl_seconds: number;
  created_at: string;
  expires_at: string;
  last_activity_at: string;
  /** the last step sequence handed out; bumped inside the step's transaction */
  last_step_sequence: number;
  runner_id: string | null;
  language: string | null;
  ended_at: string | null;
  zone: string | null;
  /** JSON object, the caller's */
  metadata: string | null;
  /** JSON `{ env, files }` (file paths only) the session was created with */
  seed: string | null;
  sandbox_id: string | null;
  /** why it ended: deleted, tenant_suspended, agent_disabled, runner_lost, ttl, idle */
  reason: string | null;
  idle_timeout_seconds: number | null;
}

export interface SessionStepsTable {
  id: string;
  session_id: string;
  sequence: number;
  command: string;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  exit_status: string | null;
  resource_usage: string | null;
  output_refs: string | null;
  created_at: string;
  /** JSON of the step request (command, env, cwd, timeout_ms, background; not stdin) */
  spec: string | null;
  verdict: string | null;
  stdout_inline: string | null;
  stderr_inline: string | null;
  error: string | null;
}

export interface ArtifactsTable {
  id: string;
  tenant_id: string;
  owner_type: string;
  owner_id: string;
  name: string;
  size_bytes: number;
  checksum: string;
  storage_uri: string;
  created_at: string;
}

export interface WorkflowsTable {
  id: string;
  tenant_id: string;
  agent_id: string | null;
  status: string;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  spec: string | null;
  /** the last step sequence handed out; bumped inside the step's transaction */
  last_step_sequence: number;
  name: string | null;
  /** why the workflow failed or was canceled */
  reason: string | null;
}

export interface WorkflowStepsTable {
  id: string;
  workflow_id: string;
  sequence: number;
  name: string | null;
  agent_id: string | null;
  job_id: string | null;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  spec: string | null;
  /** why the step failed or was canceled */
  reason: string | null;
}

export interface ServicesTable {
  id: string;
  tenant_id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  status: string;
  created_at: string;
  started_at: string | null;
  stopped_at: string | null;
  proxy_url: string | null;
  port: number | null;
  runner_id: string | null;
  /** JSON: the seed (command, env, file names, readiness, restart, language) */
  spec: string | null;
  /** why it ended (migration 0014) */
  reason: string | null;
  sandbox_id: string | null;
  expires_at: string | null;
  /** the last proxied request, written at most every few seconds */
  last_activity_at: string | null;
  restarts: number | null;
  zone: string | null;
  /** 1 when anyone with the URL may open it */
  public: number | null;
  /** JSON `[{stream, data}]`: the end of its log, kept when its sandbox was destroyed */
  log_tail: string | null;
}

/** A token scoped to one port of one service or session; only its SHA-256 is kept. */
export interface ServiceTokensTable {
  id: string;
  tenant_id: string;
  owner_type: string;
  owner_id: string;
  port: number;
  token_hash: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}

export interface RunnerNodesTable {
  id: string;
  name: string;
  status: string;
  zone: string | null;
  capacity: number;
  address: string | null;
  labels: string;
  /** JSON array of `{name, version}` the runner offers */
  languages: string;
  last_heartbeat_at: string | null;
  created_at: string;
  /** 1 while draining: no new work is placed on it */
  draining: number;
  /** hex SHA-256 of the runner's own credential; null when none is valid (revoked) */
  credential_hash: string | null;
  /** the key control-plane requests to this runner are signed with (migration 0010) */
  signing_key: string | null;
  /** JSON of the runner's warm pool as its last heartbeat reported it (migration 0018); null before */
  pool_stats: string | null;
}

/** Jobs by status, kept by triggers on `jobs` (migration 0018); sandboxes' the same way (migration 0021). */
export interface JobStatusCountsTable {
  status: string;
  n: number;
}

/** PostgreSQL only: count changes appended by the triggers, folded into job_status_counts when read. */
export interface JobStatusDeltasTable {
  status: string;
  delta: number;
}

/** A job's `secret_env`, sealed (AES-256-GCM, key outside the database) until the job ends. */
export interface JobSecretsTable {
  job_id: string;
  /** `v1.<iv>.<tag>.<ciphertext>`, base64url parts */
  sealed: string;
  created_at: string;
}

export interface SandboxInstancesTable {
  id: string;
  kind: string;
  job_id: string | null;
  session_id: string | null;
  service_id: string | null;
  runner_id: string;
  status: string;
  created_at: string;
  terminated_at: string | null;
}

export interface AuditEventsTable {
  id: string;
  tenant_id: string | null;
  /** the chain the event belongs to: its tenant's id, or `operator` for events with no tenant */
  chain_id: string;
  /** 1, 2, 3… within the chain */
  chain_seq: number;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  timestamp: string;
  outcome: string;
  details: string;
  prev_hash: string;
  /** SHA-256 (events before the audit key) or HMAC-SHA256 with the audit key over the event and prev_hash */
  hash: string;
  /** the agent the event belongs to (the acting agent, or the agent whose resource it is); null if none */
  subject_agent_id: string | null;
  /** the audit key that signed `hash`; null for events written before keyed anchoring (migration 0007) */
  hmac_key_id: string | null;
}

export interface AuditChainHeadsTable {
  chain_id: string;
  last_seq: number;
  last_hash: string;
}

/** The operator's quota overrides of one tenant; values left out follow the configured defaults. */
export interface TenantQuotasTable {
  tenant_id: string;
  /** JSON TenantQuotaOverrides */
  overrides: string;
  updated_at: string;
  updated_by: string;
}

/** The bytes of a tenant's artifact rows (per row, so content shared between rows counts each time). */
export interface TenantStorageTable {
  tenant_id: string;
  artifact_bytes: number;
}

/** A blob uploaded for a job attempt and not yet recorded as an artifact: reserves quota, or is an orphan. */
export interface BlobUploadsTable {
  id: string;
  tenant_id: string;
  job_id: string;
  attempt: number;
  /** null while the bytes are still arriving */
  checksum: string | null;
  /** the bound reserved while streaming, then the stored size */
  size_bytes: number;
  created_at: string;
}

export interface MigrationsTable {
  name: string;
  applied_at: string;
}

export interface Database {
  tenants: TenantsTable;
  agents: AgentsTable;
  api_keys: ApiKeysTable;
  policies: PoliciesTable;
  policy_versions: PolicyVersionsTable;
  jobs: JobsTable;
  sessions: SessionsTable;
  session_steps: SessionStepsTable;
  artifacts: ArtifactsTable;
  workflows: WorkflowsTable;
  workflow_steps: WorkflowStepsTable;
  services: ServicesTable;
  service_tokens: ServiceTokensTable;
  runner_nodes: RunnerNodesTable;
  job_status_counts: JobStatusCountsTable;
  job_status_deltas: JobStatusDeltasTable;
  sandbox_status_counts: JobStatusCountsTable;
  sandbox_status_deltas: JobStatusDeltasTable;
  sandbox_instances: SandboxInstancesTable;
  job_secrets: JobSecretsTable;
  audit_events: AuditEventsTable;
  audit_chain_heads: AuditChainHeadsTable;
  tenant_quotas: TenantQuotasTable;
  tenant_storage: TenantStorageTable;
  blob_uploads: BlobUploadsTable;
  kiln_migrations: MigrationsTable;
  judge0_submissions: Judge0SubmissionsTable;
  judge0_runs: Judge0RunsTable;
}

