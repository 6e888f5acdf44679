import { requestedLimitsSchema, type CreateJobInput, type Job } from '@kiln/core';
import { TimeoutError, type KilnClient } from '@kiln/sdk';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { ProgressReporter } from '../progress.js';
import { capText, guarded, outcome, toolResult } from '../results.js';
import { idSchema } from './ids.js';

const MiB = 1024 * 1024;

/** How long `run_code` waits for the job by default, and at most; past it the job goes on and `get_job` follows it. */
export const RUN_WAIT_DEFAULT_SECONDS = 120;
export const RUN_WAIT_MAX_SECONDS = 600;

const fileSchema = z.object({
  path: z.string().min(1).max(255).describe('relative path inside the workspace, e.g. "main.py" or "src/lib.py"'),
  content: z.string().max(8 * MiB).describe('the file content (text, or base64 with encoding "base64")'),
  encoding: z.enum(['utf8', 'base64']).optional().describe('how `content` is encoded; default "utf8"'),
});

// Schemas are built once per process: zod compiles a schema on its first use, and `/mcp` builds a
// server per request.
const runCodeInput = z.object({
  language: z.string().min(1).max(64).describe('the language to run, one of the names list_languages answers (e.g. "python", "node", "bash", "c")'),
  version: z.string().min(1).max(64).optional().describe('one of the versions list_languages offers for the language; default the fleet\'s'),
  code: z.string().max(8 * MiB).optional().describe('the program as one source text; give this or `files`, not both'),
  files: z.array(fileSchema).min(1).max(256).optional().describe('several files instead of `code`; `entrypoint` names the one to run'),
  entrypoint: z.string().min(1).max(255).optional().describe('with `files`: the path of the file to run, e.g. "main.py"'),
  stdin: z.string().max(8 * MiB).optional().describe('text given to the program on standard input'),
  args: z.array(z.string().max(4096)).max(256).optional().describe('command-line arguments for the program'),
  env: z.record(z.string().max(128), z.string().max(32 * 1024)).optional().describe('environment variables for the program'),
  limits: requestedLimitsSchema
    .optional()
    .describe('resource limits, each at most the policy allows: cpu_time_ms, wall_time_ms, memory_bytes, pids, output_bytes, file_size_bytes, disk_bytes'),
  collect: z.array(z.string().min(1).max(255)).max(32).optional().describe('globs of workspace files to keep as artifacts when the job ends; default ["out/**"] (write outputs under out/)'),
  policy_id: z.string().max(64).optional().describe('the policy to run under; default the tenant\'s "default" policy'),
  agent_id: z.string().max(64).optional().describe('with a tenant admin key: the agent the job is for'),
  wait_seconds: z
    .number()
    .int()
    .min(1)
    .max(RUN_WAIT_MAX_SECONDS)
    .optional()
    .describe(`how long to wait for the job to end; default ${RUN_WAIT_DEFAULT_SECONDS}. If it has not ended by then, the answer has the job still "queued" or "running": follow it with get_job`),
});

const getJobInput = z.object({ job_id: idSchema('job', 'the job id run_code answered') });
const cancelJobInput = z.object({ job_id: idSchema('job', 'the job to cancel') });

/**
 * What an agent needs of a job, bounded: the inline output is cut at INLINE_TEXT_MAX_CHARS and then
 * says so, naming the artifact that holds the whole stream.
 */
export function jobSummary(job: Job): Record<string, unknown> {
  const stdout = capText(job.stdout);
  const stderr = capText(job.stderr);
  const refs = job.output_refs;
  const notes: string[] = [];
  for (const [name, inline, artifact] of [
    ['stdout', stdout, refs?.stdout],
    ['stderr', stderr, refs?.stderr],
  ] as const) {
    const missing = inline.truncated || ((job[name] === null || job[name] === undefined) && artifact);
    if (missing) notes.push(`${name} is longer than shown: get_artifact with artifact_id "${artifact ?? '(none)'}" returns it`);
  }
  return {
    job_id: job.id,
    ...outcome(job),
    stdout: stdout.text,
    stderr: stderr.text,
    stdout_truncated: notes.some((n) => n.startsWith('stdout')),
    stderr_truncated: notes.some((n) => n.startsWith('stderr')),
    artifact_ids: refs?.artifacts ?? [],
    stdout_artifact_id: refs?.stdout ?? null,
    stderr_artifact_id: refs?.stderr ?? null,
    ...(job.rejected_artifacts?.length ? { rejected_artifacts: job.rejected_artifacts } : {}),
    ...(job.error ? { error: job.error } : {}),
    language: job.language,
    attempt: job.attempt,
    requested_at: job.requested_at,
    completed_at: job.completed_at,
    ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
  };
}

export function registerJobTools(server: McpServer, client: KilnClient): void {
  server.registerTool(
    'run_code',
    {
      title: 'Run code in a sandbox',
      description:
        'Runs a program once in a fresh, isolated kiln sandbox (no network unless the policy allows it) and returns ' +
        'its stdout, stderr, exit code and verdict ("ok", "compile_error", "runtime_error", "time_limit", "memory_limit", ' +
        '"output_limit", "file_size_limit", "canceled", "system_error"), with the ids of the artifacts it left. ' +
        'Give `code` (one source text) or `files`. Files the program writes under out/ are kept as artifacts. Output ' +
        'shown inline is capped; the full stdout and stderr are artifacts too (get_artifact). Sends progress notifications while it runs when the request has a progressToken.',
      inputSchema: runCodeInput,
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
    },
    (args, extra) =>
      guarded(async () => {
        const { wait_seconds, ...request } = args;
        const progress = new ProgressReporter(extra);
        let submitted: Job | undefined;
        progress.start('submitting the job');
        try {
          const job = await client.jobs.run(request as CreateJobInput, {
            onJob: (j) => {
              submitted = j;
              // The id in the progress message lets an agent follow or cancel the job before the answer.
              progress.status(`job ${j.id} ${j.status}`);
            },
            onStdout: (d) => progress.output(d.length),
            onStderr: (d) => progress.output(d.length),
            timeoutMs: (wait_seconds ?? RUN_WAIT_DEFAULT_SECONDS) * 1000,
            onTimeout: 'detach',
            // The client cancelling the call cancels the job.
            signal: extra.signal,
          });
          return toolResult(jobSummary(job));
        } catch (err) {
          if (err instanceof TimeoutError && submitted) {
            const job = await client.jobs.get(submitted.id);
            return toolResult({ ...jobSummary(job), note: `the job has not ended within the wait; call get_job with job_id "${job.id}" to follow it, or cancel_job` });
          }
          throw err;
        } finally {
          progress.stop();
        }
      }),
  );

  server.registerTool(
    'list_languages',
    {
      title: 'List languages',
      description: 'The languages and versions the kiln fleet can run now (the names run_code takes), with how many runners offer each.',
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    () => guarded(async () => toolResult({ languages: (await client.languages()).items })),
  );

  server.registerTool(
    'get_job',
    {
      title: 'Get a job',
      description:
        'A job by id: status ("queued", "running", "succeeded", "failed", "canceled"), verdict, exit code, output (capped; the full output is in the stdout/stderr artifacts) and artifact ids.',
      inputSchema: getJobInput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ job_id }) => guarded(async () => toolResult(jobSummary(await client.jobs.get(job_id)))),
  );

  server.registerTool(
    'cancel_job',
    {
      title: 'Cancel a job',
      description: 'Cancels a queued or running job (its sandbox is killed); a job that already ended answers as it is.',
      inputSchema: cancelJobInput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    ({ job_id }) => guarded(async () => toolResult(jobSummary(await client.jobs.cancel(job_id)))),
  );
}
