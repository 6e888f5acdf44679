import { randomUUID } from 'node:crypto';
import { constants } from 'node:os';
import { isKilnError, KilnError, toRfc3339, type CreateJobRequest, type Job, type Limits } from '@kiln/core';
import { limitCeilings } from '../../../domain/quota.js';
import { deleteJudge0Submission, findJudge0Submission, insertJudge0Submission, type Judge0SubmissionRow } from '../../../store/judge0.js';
import { listFleetLanguages } from '../../../store/runners.js';
import { requireTenantMember } from '../../access.js';
import type { Principal } from '../../context.js';
import type { JobDeps } from '../../job-deps.js';
import { getTenantJob, resolvePolicy, submitJob } from '../../jobs.js';
import { isTerminalStatus } from '../../job-views.js';
import { effectiveQuota } from '../../quotas.js';
import { deleteJob } from '../../retention.js';
import { jobOutput } from '../job-output.js';
import { unpackAdditionalFiles } from './additional-files.js';
import { checkCallbackUrl } from './callback.js';
import { judge0Language, judge0LanguageName } from './languages.js';
import { judge0AnswerMatches, judge0Status, type Judge0Status, type Judge0StatusId } from './statuses.js';
import {
  decodeBase64Field,
  judge0Invalid,
  Judge0ValidationError,
  splitArguments,
  type Judge0SubmissionInput,
} from './submission-request.js';

/** What the submission row keeps for its answers (the jobs hold the rest). */
interface StoredRequest {
  source_code: string;
  stdin: string | null;
  expected_output: string | null;
  compiler_options: string | null;
  command_line_arguments: string | null;
  redirect_stderr_to_stdout: boolean;
  number_of_runs: number;
  cpu_time_limit: number | null;
  cpu_extra_time: number | null;
  wall_time_limit: number | null;
  memory_limit: number | null;
  stack_limit: number | null;
  max_processes_and_or_threads: number | null;
  max_file_size: number | null;
  enable_network: boolean;
  base64_encoded: boolean;
}

export interface Judge0Options {
  /** hosts `callback_url` may name (KILN_JUDGE0_CALLBACK_HOSTS) */
  callbackHosts: readonly string[];
}

/** Judge0's default answer fields (`GET /submissions/{token}` without `fields`). */
export const JUDGE0_DEFAULT_FIELDS = ['stdout', 'time', 'memory', 'stderr', 'token', 'compile_output', 'message', 'status'] as const;
/** Every field `fields=*` answers. */
export const JUDGE0_ALL_FIELDS = [
  'source_code', 'language_id', 'stdin', 'expected_output', 'stdout', 'status_id', 'created_at', 'finished_at', 'time', 'memory',
  'stderr', 'token', 'number_of_runs', 'cpu_time_limit', 'cpu_extra_time', 'wall_time_limit', 'memory_limit', 'stack_limit',
  'max_processes_and_or_threads', 'enable_per_process_and_thread_time_limit', 'enable_per_process_and_thread_memory_limit',
  'max_file_size', 'compile_output', 'exit_code', 'exit_signal', 'message', 'wall_time', 'compiler_options',
  'command_line_arguments', 'redirect_stderr_to_stdout', 'callback_url', 'additional_files', 'enable_network', 'status', 'language',
] as const;

/** Judge0's limits in its units (seconds, kilobytes) as kiln's, checked against the policy's ceilings. */
async function judge0Limits(deps: JobDeps, principal: Principal, input: Judge0SubmissionInput): Promise<Partial<Limits>> {
  const tenantId = requireTenantMember(principal);
  const policy = await resolvePolicy(deps, tenantId);
  const ceilings = limitCeilings(policy.ruleset.limits, await effectiveQuota(deps, deps.store, tenantId));
  const limits: Partial<Limits> = {};
  const take = (field: string, value: number | null | undefined, scale: number, ceiling: number, name: keyof Limits) => {
    if (value === null || value === undefined) return;
    const kiln = Math.max(1, Math.round(value * scale));
    if (kiln > ceiling) throw judge0Invalid(field, `must be less than or equal to ${ceiling / scale}`);
    limits[name] = kiln;
  };
  const cpu = input.cpu_time_limit === null || input.cpu_time_limit === undefined ? undefined : input.cpu_time_limit + (input.cpu_extra_time ?? 0);
  take('cpu_time_limit', cpu, 1000, ceilings.cpu_time_ms, 'cpu_time_ms');
  take('wall_time_limit', input.wall_time_limit, 1000, ceilings.wall_time_ms, 'wall_time_ms');
  take('memory_limit', input.memory_limit, 1024, ceilings.memory_bytes, 'memory_bytes');
  take('max_processes_and_or_threads', input.max_processes_and_or_threads, 1, ceilings.pids, 'pids');
  take('max_file_size', input.max_file_size, 1024, ceilings.file_size_bytes, 'file_size_bytes');
  if (input.enable_network && policy.ruleset.network.egress === 'none') {
    throw judge0Invalid('enable_network', `is not allowed: policy ${policy.name} v${policy.version} gives no network`);
  }
  return limits;
}

/**
 * Creates a Judge0 submission: one kiln job per run under the caller's policy (each audited, each in
 * `/v1/jobs`), and the submission's token. Bad input is 422 in Judge0's `{"field": [...]}` shape.
 */
export async function createJudge0Submission(
  deps: JobDeps,
  principal: Principal,
  input: Judge0SubmissionInput,
  base64: boolean,
  options: Judge0Options,
): Promise<string> {
  const language = judge0Language(input.language_id);
  const offers = await listFleetLanguages(deps.store);
  if (!language || !offers.some((o) => o.name === language.kiln)) {
    throw judge0Invalid('language_id', `language with id ${input.language_id} doesn't exist`);
  }
  const decode = (field: string, value: string | null | undefined) => (base64 ? decodeBase64Field(field, value) : (value ?? null));
  const source = decode('source_code', input.source_code);
  if (source === null || source === '') throw judge0Invalid('source_code', "can't be blank");
  const stdin = decode('stdin', input.stdin);
  const expected = decode('expected_output', input.expected_output);
  const limits = await judge0Limits(deps, principal, input);
  let callback: URL | undefined;
  let files: CreateJobRequest['files'];
  try {
    if (input.callback_url) callback = checkCallbackUrl(input.callback_url, options.callbackHosts);
    if (input.additional_files) files = await unpackAdditionalFiles(input.additional_files);
  } catch (err) {
    if (isKilnError(err) && err.code === 'VALIDATION_FAILED') throw Judge0ValidationError.from(err);
    throw err;
  }
  const args = input.command_line_arguments ? splitArguments(input.command_line_arguments) : [];
  const job: CreateJobRequest = {
    language: language.kiln,
    code: source,
    ...(files && files.length > 0 ? { files } : {}),
    ...(stdin !== null ? { stdin } : {}),
    args,
    limits,
    // The runner passes these to the compiler as separate words (never through a shell's parsing).
    ...(input.compiler_options && language.compiled ? { compiler_options: input.compiler_options } : {}),
    collect: [],
  };
  const runs = input.number_of_runs ?? 1;
  const jobIds: string[] = [];
  for (let i = 0; i < runs; i += 1) jobIds.push((await submitJob(deps, principal, job, { judge0Run: true })).id);
  const stored: StoredRequest = {
    source_code: source,
    stdin,
    expected_output: expected,
    compiler_options: input.compiler_options ?? null,
    command_line_arguments: input.command_line_arguments ?? null,
    redirect_stderr_to_stdout: input.redirect_stderr_to_stdout ?? false,
    number_of_runs: runs,
    cpu_time_limit: input.cpu_time_limit ?? null,
    cpu_extra_time: input.cpu_extra_time ?? null,
    wall_time_limit: input.wall_time_limit ?? null,
    memory_limit: input.memory_limit ?? null,
    stack_limit: input.stack_limit ?? null,
    max_processes_and_or_threads: input.max_processes_and_or_threads ?? null,
    max_file_size: input.max_file_size ?? null,
    enable_network: input.enable_network ?? false,
    base64_encoded: base64,
  };
  const token = randomUUID();
  await insertJudge0Submission(deps.store, {
    token,
    tenant_id: requireTenantMember(principal),
    agent_id: principal.kind === 'agent' ? principal.agentId : null,
    language_id: input.language_id,
    job_ids: JSON.stringify(jobIds),
    request: JSON.stringify(stored),
    callback_url: callback?.toString() ?? null,
    callback_state: callback ? 'pending' : null,
    created_at: toRfc3339(deps.clock.nowMs()),
  });
  return token;
}

export function notFoundSubmission(token: string): KilnError {
  return new KilnError('NOT_FOUND', `submission ${token.slice(0, 64)} does not exist`);
}

/** The caller's submission: another tenant's, or another agent's, answers 404 like a missing one. */
export async function findSubmission(deps: JobDeps, principal: Principal, token: string): Promise<Judge0SubmissionRow> {
  const tenantId = requireTenantMember(principal);
  const row = await findJudge0Submission(deps.store, tenantId, token);
  if (!row || (principal.kind === 'agent' && row.agent_id !== principal.agentId)) throw notFoundSubmission(token);
  return row;
}

async function loadJobs(deps: JobDeps, principal: Principal, row: Judge0SubmissionRow): Promise<Job[]> {
  try {
    return await Promise.all((JSON.parse(row.job_ids) as string[]).map((id) => getTenantJob(deps, principal, id)));
  } catch (err) {
    // A job retention removed: the submission is gone with it.
    if (isKilnError(err) && err.code === 'NOT_FOUND') throw notFoundSubmission(row.token);
    throw err;
  }
}

const SIGNALS = constants.signals as Record<string, number>;

/** Judge0's status of an ended run, from kiln's verdict (decided from evidence) and the answer check. */
function statusOfRun(job: Job, stdout: string, expected: string | null): Judge0StatusId {
  if (job.status === 'queued') return 1;
  if (job.status === 'running') return 2;
  switch (job.verdict) {
    case 'ok':
      return expected === null || judge0AnswerMatches(stdout, expected) ? 3 : 4;
    case 'compile_error':
      return 6;
    case 'time_limit':
      return 5;
    case 'file_size_limit':
      return 8;
    case 'memory_limit':
    case 'output_limit':
      return 12;
    case 'runtime_error': {
      const signal = job.exit_status?.signal;
      if (!signal) return 11;
      // By number: SIGABRT and SIGIOT are one signal under two names.
      const bySignal: Record<number, Judge0StatusId> = { [SIGNALS.SIGSEGV!]: 7, [SIGNALS.SIGXFSZ!]: 8, [SIGNALS.SIGFPE!]: 9, [SIGNALS.SIGABRT!]: 10 };
      return bySignal[SIGNALS[signal] ?? -1] ?? 12;
    }
    default:
      return 13;
  }
}

function messageOf(job: Job): string | null {
  switch (job.verdict) {
    case 'time_limit':
      return 'Time limit exceeded';
    case 'memory_limit':
      return 'Memory limit exceeded';
    case 'output_limit':
      return 'Output limit exceeded';
    case 'file_size_limit':
      return 'File size limit exceeded';
    case 'system_error':
      return 'Internal error';
    case 'canceled':
      return 'Canceled';
    case 'runtime_error':
      return job.exit_status?.signal ? `Caught fatal signal ${SIGNALS[job.exit_status.signal] ?? job.exit_status.signal}` : `Exited with error status ${job.exit_status?.code}`;
    default:
      return null;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The error Judge0 answers when output is not UTF-8 and base64 was not asked for. */
export class Judge0EncodingError extends Error {
  readonly status = 400;
}

/**
 * A submission as Judge0 answers it, with the `fields` asked for. Times are strings of seconds, memory
 * kilobytes; with several runs, time and memory are the runs' averages (as Judge0 reports them).
 */
export async function judge0View(
  deps: JobDeps,
  principal: Principal,
  row: Judge0SubmissionRow,
  fields: readonly string[],
  base64: boolean,
): Promise<Record<string, unknown>> {
  const stored = JSON.parse(row.request) as StoredRequest;
  const jobs = await loadJobs(deps, principal, row);
  const first = jobs[0]!;
  const ended = jobs.every((j) => isTerminalStatus(j.status));
  const output = ended ? await jobOutput(deps, principal, first) : { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  const compiled = first.verdict === 'compile_error';
  let stdout: Buffer | null = ended && !compiled ? output.stdout : null;
  let stderr: Buffer | null = ended && !compiled ? output.stderr : null;
  if (stored.redirect_stderr_to_stdout && stdout !== null) {
    stdout = Buffer.concat([stdout, stderr ?? Buffer.alloc(0)]);
    stderr = null;
  }
  const compileOutput = first.compile ? `${first.compile.stdout}${first.compile.stderr}` || null : compiled ? Buffer.concat([output.stdout, output.stderr]) : null;
  // The first run that is not Accepted decides, as a judge reports the worst of its runs.
  let statusId: Judge0StatusId = ended ? 3 : jobs.some((j) => j.status === 'running') ? 2 : 1;
  if (ended) {
    for (const job of jobs) {
      const runOutput = job === first ? output : await jobOutput(deps, principal, job);
      const answer = stored.redirect_stderr_to_stdout ? Buffer.concat([runOutput.stdout, runOutput.stderr]) : runOutput.stdout;
      const id = statusOfRun(job, answer.toString('utf8'), stored.expected_output);
      if (id !== 3) {
        statusId = id;
        break;
      }
    }
  }
  const status: Judge0Status = judge0Status(statusId);
  const average = (pick: (j: Job) => number) => jobs.reduce((n, j) => n + pick(j), 0) / jobs.length;
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const language = judge0Language(row.language_id)!;
  const offer = (await listFleetLanguages(deps.store)).find((o) => o.name === language.kiln);
  const text = (value: Buffer | string | null): string | null => {
    if (value === null) return null;
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (base64) return bytes.toString('base64');
    try {
      return utf8.decode(bytes);
    } catch {
      throw new Judge0EncodingError('some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter');
    }
  };
  const exitSignal = first.exit_status?.signal ? (SIGNALS[first.exit_status.signal] ?? null) : null;
  const all: Record<string, () => unknown> = {
    token: () => row.token,
    source_code: () => text(stored.source_code),
    language_id: () => row.language_id,
    language: () => ({ id: row.language_id, name: judge0LanguageName(language, offer?.versions.at(-1)) }),
    stdin: () => text(stored.stdin),
    expected_output: () => text(stored.expected_output),
    stdout: () => text(stdout),
    stderr: () => text(stderr),
    compile_output: () => text(compileOutput),
    message: () => (ended ? text(messageOf(jobs.find((j) => j.verdict !== 'ok') ?? first)) : null),
    exit_code: () => (ended ? (first.exit_status?.code ?? null) : null),
    exit_signal: () => (ended ? exitSignal : null),
    status: () => status,
    status_id: () => status.id,
    created_at: () => row.created_at,
    finished_at: () => (ended ? (jobs.map((j) => j.completed_at).sort().at(-1) ?? null) : null),
    time: () => (ended && first.resource_usage ? seconds(average((j) => j.resource_usage?.cpu_time_ms ?? 0)) : null),
    wall_time: () => (ended && first.resource_usage ? seconds(average((j) => j.resource_usage?.wall_time_ms ?? 0)) : null),
    memory: () => (ended && first.resource_usage ? Math.round(average((j) => j.resource_usage?.memory_peak_bytes ?? 0) / 1024) : null),
    number_of_runs: () => stored.number_of_runs,
    cpu_time_limit: () => stored.cpu_time_limit,
    cpu_extra_time: () => stored.cpu_extra_time,
    wall_time_limit: () => stored.wall_time_limit,
    memory_limit: () => stored.memory_limit,
    stack_limit: () => stored.stack_limit,
    max_processes_and_or_threads: () => stored.max_processes_and_or_threads,
    enable_per_process_and_thread_time_limit: () => false,
    enable_per_process_and_thread_memory_limit: () => false,
    max_file_size: () => stored.max_file_size,
    compiler_options: () => stored.compiler_options,
    command_line_arguments: () => stored.command_line_arguments,
    redirect_stderr_to_stdout: () => stored.redirect_stderr_to_stdout,
    callback_url: () => row.callback_url,
    additional_files: () => null,
    enable_network: () => stored.enable_network,
  };
  const view: Record<string, unknown> = {};
  for (const field of fields) if (Object.hasOwn(all, field)) view[field] = all[field]!();
  return view;
}

/** `fields=a,b` or `*` as a list of fields; unknown names are left out (Judge0 ignores them). */
export function parseFields(fields: string | undefined): readonly string[] {
  if (fields === undefined || fields === '') return JUDGE0_DEFAULT_FIELDS;
  if (fields.trim() === '*') return JUDGE0_ALL_FIELDS;
  return fields.split(',').map((f) => f.trim()).filter((f) => (JUDGE0_ALL_FIELDS as readonly string[]).includes(f));
}

/** Deletes an ended submission with its jobs (each deletion audited); one still running is refused. */
export async function deleteJudge0(deps: JobDeps, principal: Principal, token: string, fields: readonly string[], base64: boolean) {
  const row = await findSubmission(deps, principal, token);
  const view = await judge0View(deps, principal, row, [...new Set([...fields, 'status'])], base64);
  const status = view.status as Judge0Status;
  if (status.id <= 2) {
    throw new KilnError('CONFLICT', `submission cannot be deleted because its status is ${status.id} (${status.description})`);
  }
  for (const id of JSON.parse(row.job_ids) as string[]) await deleteJob(deps, principal, id);
  await deleteJudge0Submission(deps.store, row.token);
  if (!fields.includes('status')) delete view.status;
  return view;
}
