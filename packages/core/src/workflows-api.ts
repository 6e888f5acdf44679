import { z } from 'zod';
import { createJobSchema, workspacePathSchema } from './jobs-api.js';

/** Bounds of one workflow request: everything in it is tenant input. */
export const WORKFLOW_LIMITS = {
  maxSteps: 64,
  maxInputsPerStep: 32,
  maxNeedsPerStep: 64,
  /** Bytes of all inputs one step receives together (also bounded by its policy's artifact rules). */
  maxInputBytesPerStep: 8 * 1024 * 1024,
} as const;

/** Step names: short, so they fit in reasons, paths and logs; no characters a shell or URL minds. */
export const stepNameSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", "." or "-", e.g. "clean"');

/** An artifact of an earlier step placed into this step's workspace at `path`. */
export const workflowInputSchema = z.strictObject({
  step: stepNameSchema,
  /** the artifact's name as the earlier step's job recorded it, e.g. `out/data.csv` */
  artifact: z.string().min(1).max(1024),
  path: workspacePathSchema,
});
export type WorkflowInput = z.infer<typeof workflowInputSchema>;

/** One step: a job request (without secret_env) plus its place in the workflow. */
export const workflowStepRequestSchema = z
  .strictObject({
    name: stepNameSchema,
    inputs: z.array(workflowInputSchema).max(WORKFLOW_LIMITS.maxInputsPerStep).optional(),
    needs: z.array(stepNameSchema).max(WORKFLOW_LIMITS.maxNeedsPerStep).optional(),
    continue_on_failure: z.boolean().optional(),
  })
  .catchall(z.unknown());

export const createWorkflowSchema = z.strictObject({
  name: z.string().min(1).max(128).optional(),
  steps: z.array(workflowStepRequestSchema).min(1).max(WORKFLOW_LIMITS.maxSteps),
});
export type CreateWorkflowRequest = z.infer<typeof createWorkflowSchema>;

/** The job part of a step, checked with the job request's own schema (secret_env is not taken). */
export const workflowStepJobSchema = createJobSchema;

export const WORKFLOW_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const workflowStatusSchema = z.enum(WORKFLOW_STATUSES);
export type WorkflowStatus = z.infer<typeof workflowStatusSchema>;

/** A step mirrors its job while it has one (`queued`, `running`); `pending` until then. */
export const WORKFLOW_STEP_STATUSES = ['pending', 'queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const workflowStepStatusSchema = z.enum(WORKFLOW_STEP_STATUSES);
export type WorkflowStepStatus = z.infer<typeof workflowStepStatusSchema>;

export const workflowStepSchema = z.object({
  id: z.string(),
  workflow_id: z.string(),
  sequence: z.number().int(),
  name: z.string(),
  agent_id: z.string().nullable(),
  policy_id: z.string(),
  language: z.string(),
  needs: z.array(z.string()),
  inputs: z.array(workflowInputSchema),
  continue_on_failure: z.boolean(),
  job_id: z.string().nullable(),
  status: workflowStepStatusSchema,
  /** why the step failed or was canceled, when it was */
  reason: z.string().nullable(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
});
export type WorkflowStep = z.infer<typeof workflowStepSchema>;

export const workflowSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  name: z.string().nullable(),
  agent_id: z.string().nullable(),
  status: workflowStatusSchema,
  reason: z.string().nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  steps: z.array(workflowStepSchema).optional(),
});
export type Workflow = z.infer<typeof workflowSchema>;

/** `output` events of a workflow's stream: a chunk of a step's job output, as produced. */
export const workflowOutputChunkSchema = z.object({
  step: z.string(),
  job_id: z.string(),
  stream: z.enum(['stdout', 'stderr']),
  data: z.string(),
});
export type WorkflowOutputChunk = z.infer<typeof workflowOutputChunkSchema>;
