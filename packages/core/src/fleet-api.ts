import { z } from 'zod';
import { runnerLanguageSchema } from './runner-protocol.js';

/** API shapes of artifacts, runner nodes and sandbox instances (ARCHITECTURE.md §3, §5). */

export const ARTIFACT_OWNER_TYPES = ['job', 'session_step', 'workflow_step'] as const;
export const artifactOwnerTypeSchema = z.enum(ARTIFACT_OWNER_TYPES);

export const artifactSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  owner_type: artifactOwnerTypeSchema,
  owner_id: z.string(),
  name: z.string(),
  size_bytes: z.number().int(),
  checksum: z.string(),
  /** Where the bytes are (a host path or a bucket): shown to the operator only. */
  storage_uri: z.string().optional(),
  created_at: z.string(),
}).meta({ id: 'Artifact' });
export type Artifact = z.infer<typeof artifactSchema>;

export const RUNNER_STATUSES = ['healthy', 'degraded', 'offline'] as const;
export const runnerStatusSchema = z.enum(RUNNER_STATUSES);

export const runnerNodeSchema = z.object({
  id: z.string(),
  name: z.string(),
  status: runnerStatusSchema,
  zone: z.string(),
  capacity: z.number().int(),
  address: z.string().nullable(),
  labels: z.record(z.string(), z.string()),
  languages: z.array(runnerLanguageSchema),
  draining: z.boolean(),
  last_heartbeat_at: z.string().nullable(),
  created_at: z.string(),
}).meta({ id: 'RunnerNode' });
export type RunnerNode = z.infer<typeof runnerNodeSchema>;

export const SANDBOX_STATUSES = ['provisioning', 'running', 'terminated', 'failed'] as const;
export const sandboxStatusSchema = z.enum(SANDBOX_STATUSES);

export const sandboxInstanceSchema = z.object({
  id: z.string(),
  kind: z.enum(['job', 'session', 'service']),
  job_id: z.string().nullable(),
  session_id: z.string().nullable(),
  service_id: z.string().nullable(),
  runner_id: z.string(),
  status: sandboxStatusSchema,
  created_at: z.string(),
  terminated_at: z.string().nullable(),
}).meta({ id: 'SandboxInstance' });
export type SandboxInstance = z.infer<typeof sandboxInstanceSchema>;
