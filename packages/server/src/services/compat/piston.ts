import { KilnError, workspacePathSchema, type CompileLimits, type CompileResult, type CreateJobRequest, type Job, type Limits } from '@kiln/core';
import { z } from 'zod';
import { limitCeilings } from '../../domain/quota.js';
import { listFleetLanguages } from '../../store/runners.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { resolvePolicy, submitJob, waitForJob } from '../jobs.js';
import { effectiveQuota } from '../quotas.js';
import { requireTenantMember } from '../access.js';
import { jobOutput } from './job-output.js';
import { pistonRuntimes, resolvePistonRuntime, type PistonRuntime } from './piston-runtimes.js';

const MiB = 1024 * 1024;
/** Piston's "no limit" for a memory limit: kiln then applies the policy's. */
const NO_LIMIT = -1;

const limitMs = z.number().int().min(0).max(3_600_000);
const memoryLimit = z.number().int().min(NO_LIMIT).max(64 * 1024 * MiB);

/** `POST /api/v2/execute` as Piston documents it; unknown fields are ignored, as Piston does. */
export const pistonExecuteSchema = z.object({
  language: z.string().min(1).max(64),
  version: z.string().min(1).max(64),
  files: z
    .array(
      z.object({
        name: z.string().max(255).optional(),
        content: z.string().max(8 * MiB),
        encoding: z.enum(['utf8', 'base64', 'hex']).default('utf8'),
      }),
    )
    .min(1)
    .max(256),
  stdin: z.string().max(8 * MiB).default(''),
  args: z.array(z.string().max(4096)).max(256).default([]),
  compile_timeout: limitMs.optional(),
  run_timeout: limitMs.optional(),
  compile_cpu_time: limitMs.optional(),
  run_cpu_time: limitMs.optional(),
  compile_memory_limit: memoryLimit.optional(),
  run_memory_limit: memoryLimit.optional(),
});
export type PistonExecuteRequest = z.infer<typeof pistonExecuteSchema>;

/** Piston's stage status: runtime error, signal, timeout, stdout/stderr over the limit, internal error. */
export type PistonStatus = 'RE' | 'SG' | 'TO' | 'OL' | 'EL' | 'XX' | null;

export interface PistonStage {
  stdout: string;
  stderr: string;
  output: string;
  code: number | null;
  signal: string | null;
  message: string | null;
  status: PistonStatus;
  cpu_time: number;
  wall_time: number;
  memory: number;
}

export interface PistonResult {
  language: string;
  version: string;
  run?: PistonStage;
  compile?: PistonStage;
}

/** Piston's error shape carries only `message`; this keeps the status the answer gets. */
export function pistonError(message: string): KilnError {
  return new KilnError('VALIDATION_FAILED', message);
}

/** The fleet's offer as Piston's runtimes list. */
export async function listPistonRuntimes(deps: JobDeps): Promise<PistonRuntime[]> {
  return pistonRuntimes(await listFleetLanguages(deps.store));
}

function decode(file: PistonExecuteRequest['files'][number]): { content: string; encoding: 'utf8' | 'base64' } {
  if (file.encoding === 'hex') {
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(file.content)) throw pistonError('files: a hex-encoded file must be pairs of hex digits');
    return { content: Buffer.from(file.content, 'hex').toString('base64'), encoding: 'base64' };
  }
  return { content: file.content, encoding: file.encoding };
}

/**
 * Piston's limits checked against the policy's ceilings (lowered by the quota): asking for more is
 * refused in Piston's shape naming the field and the ceiling, as kiln's own API refuses it.
 */
async function pistonLimits(deps: JobDeps, principal: Principal, body: PistonExecuteRequest, runtime: PistonRuntime) {
  const tenantId = requireTenantMember(principal);
  const policy = await resolvePolicy(deps, tenantId);
  const ceilings = limitCeilings(policy.ruleset.limits, await effectiveQuota(deps, deps.store, tenantId));
  const check = (field: keyof PistonExecuteRequest, value: number | undefined, ceiling: number, unit: string) => {
    if (value === undefined || value === NO_LIMIT) return undefined;
    if (value > ceiling) {
      throw pistonError(`${field} cannot exceed the configured limit of ${ceiling} ${unit} (policy ${policy.name} v${policy.version})`);
    }
    return value;
  };
  const defined = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const run = defined({
    wall_time_ms: check('run_timeout', body.run_timeout, ceilings.wall_time_ms, 'ms'),
    cpu_time_ms: check('run_cpu_time', body.run_cpu_time, ceilings.cpu_time_ms, 'ms'),
    memory_bytes: check('run_memory_limit', body.run_memory_limit, ceilings.memory_bytes, 'bytes'),
  }) as Partial<Limits>;
  // The compile step has limits of its own (kiln's `compile_limits`), each within the same ceiling.
  const compile = defined({
    wall_time_ms: check('compile_timeout', body.compile_timeout, ceilings.wall_time_ms, 'ms'),
    cpu_time_ms: check('compile_cpu_time', body.compile_cpu_time, ceilings.cpu_time_ms, 'ms'),
    memory_bytes: check('compile_memory_limit', body.compile_memory_limit, ceilings.memory_bytes, 'bytes'),
  }) as CompileLimits;
  return { run, compile: runtime.compiled && Object.keys(compile).length > 0 ? compile : undefined };
}

/** A Piston request as a kiln job request: the first file is the one that runs. */
export function toJobRequest(
  body: PistonExecuteRequest,
  runtime: PistonRuntime,
  limits: { run: Partial<Limits>; compile: CompileLimits | undefined },
): CreateJobRequest {
  const files = body.files.map((file, i) => {
    const name = file.name ?? (i === 0 ? undefined : `file${i}.code`);
    if (name !== undefined && !workspacePathSchema.safeParse(name).success) {
      throw pistonError(`files[${i}].name must be a relative path inside the workspace without "..", e.g. "src/main.py"`);
    }
    return { name, ...decode(file) };
  });
  const [main, ...rest] = files;
  const others = rest.map((f) => ({ path: f.name!, content: f.content, encoding: f.encoding }));
  const base = {
    language: runtime.kilnLanguage,
    version: runtime.version,
    stdin: body.stdin,
    args: body.args,
    limits: limits.run,
    ...(limits.compile ? { compile_limits: limits.compile } : {}),
    collect: [],
  };
  // An unnamed main file gets the language's own file name (the runner knows it).
  if (main!.name === undefined && main!.encoding === 'utf8') {
    return { ...base, code: main!.content, ...(others.length > 0 ? { files: others } : {}) } as CreateJobRequest;
  }
  const mainPath = main!.name ?? 'main';
  return { ...base, files: [{ path: mainPath, content: main!.content, encoding: main!.encoding }, ...others], entrypoint: mainPath };
}

const text = (b: Buffer) => b.toString('utf8');

function stageOf(job: Job, stdout: Buffer, stderr: Buffer): PistonStage {
  const usage = job.resource_usage;
  const signal = job.exit_status?.signal ?? null;
  const code = job.exit_status?.code ?? null;
  const [status, message] = statusOf(job, code, signal);
  return {
    stdout: text(stdout),
    stderr: text(stderr),
    output: text(Buffer.concat([stdout, stderr])),
    code,
    signal,
    message,
    status,
    cpu_time: Math.round(usage?.cpu_time_ms ?? 0),
    wall_time: Math.round(usage?.wall_time_ms ?? 0),
    memory: usage?.memory_peak_bytes ?? 0,
  };
}

/** The compile step as Piston's compile stage; its memory is the sandbox's peak (one sandbox for both). */
function compileStageOf(compile: CompileResult, memoryPeakBytes: number): PistonStage {
  const { code, signal } = compile.exit_status;
  const [status, message]: [PistonStatus, string | null] =
    compile.verdict === 'ok' ? [null, null] : compile.verdict === 'time_limit' ? ['TO', 'Time limit exceeded'] : signal ? ['SG', `Killed by ${signal}`] : ['RE', `Exited with code ${code}`];
  return {
    stdout: compile.stdout,
    stderr: compile.stderr,
    output: `${compile.stdout}${compile.stderr}`,
    code,
    signal,
    message,
    status,
    cpu_time: Math.round(compile.resource_usage.cpu_time_ms),
    wall_time: Math.round(compile.resource_usage.wall_time_ms),
    memory: memoryPeakBytes,
  };
}

/** Piston's status and message of a stage, from kiln's verdict (which is decided from evidence). */
function statusOf(job: Job, code: number | null, signal: string | null): [PistonStatus, string | null] {
  switch (job.verdict) {
    case 'ok':
      return [null, null];
    case 'time_limit':
      return ['TO', 'Time limit exceeded'];
    case 'output_limit':
      return ['OL', 'Output limit exceeded'];
    case 'memory_limit':
      return ['SG', 'Memory limit exceeded'];
    case 'file_size_limit':
      return ['SG', 'File size limit exceeded'];
    case 'canceled':
      return ['SG', 'Canceled'];
    case 'system_error':
      return ['XX', 'Internal error'];
    case 'runtime_error':
    case 'compile_error':
      return signal !== null ? ['SG', `Killed by ${signal}`] : ['RE', `Exited with code ${code}`];
    default:
      return ['XX', 'The job did not end within the server\'s wait'];
  }
}

/** The job's result in Piston's shape: a compile stage for compiled languages, a run stage unless compiling failed. */
export async function pistonResultOf(deps: JobDeps, principal: Principal, job: Job, runtime: PistonRuntime): Promise<PistonResult> {
  const { stdout, stderr } = await jobOutput(deps, principal, job);
  const result: PistonResult = { language: runtime.language, version: runtime.version };
  if (job.compile) {
    result.compile = compileStageOf(job.compile, job.resource_usage?.memory_peak_bytes ?? 0);
    if (job.compile.verdict !== 'ok') return result;
  }
  result.run = stageOf(job, stdout, stderr);
  return result;
}

/** Resolves the runtime, refusing an unknown one as Piston does. */
export async function findPistonRuntime(deps: JobDeps, language: string, version: string): Promise<PistonRuntime> {
  const runtime = resolvePistonRuntime(await listPistonRuntimes(deps), language, version);
  if (!runtime) throw pistonError(`${language}-${version} runtime is unknown`);
  return runtime;
}

/** Submits a Piston request as a kiln job under the caller's policy (audited, in `/v1/jobs`). */
export async function startPiston(
  deps: JobDeps,
  principal: Principal,
  body: PistonExecuteRequest,
  /** The WebSocket's job keeps its stdin open for later `data` messages. */
  options: { stdinOpen?: boolean } = {},
): Promise<{ job: Job; runtime: PistonRuntime }> {
  const runtime = await findPistonRuntime(deps, body.language, body.version);
  const limits = await pistonLimits(deps, principal, body, runtime);
  const request = { ...toJobRequest(body, runtime, limits), ...(options.stdinOpen ? { stdin_open: true } : {}) };
  return { job: await submitJob(deps, principal, request), runtime };
}

/** Runs a Piston request as a kiln job and waits (bounded) for its end. */
export async function executePiston(deps: JobDeps, principal: Principal, body: PistonExecuteRequest, signal?: AbortSignal): Promise<PistonResult> {
  const { job: submitted, runtime } = await startPiston(deps, principal, body);
  const job = await waitForJob(deps, principal, submitted.id, deps.fleet.maxWaitMs, signal);
  return pistonResultOf(deps, principal, job, runtime);
}
