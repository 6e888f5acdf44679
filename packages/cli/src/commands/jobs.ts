import type { Command } from 'commander';
import type { Job } from '@kiln/core';
import type { KilnClient } from '@kiln/sdk';
import { apiCommand, clientFor, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

const JOB_COLUMNS = ['id', 'status', 'verdict', 'language', 'agent_id', 'requested_at'];

/** A job for people: the fields that say what happened, without the inline output. */
export function jobSummary(job: Job): string {
  const { stdout: _stdout, stderr: _stderr, ...rest } = job;
  return fields(rest);
}

/** Prints a job's whole output: inline on the job when small, else from its stdout/stderr artifacts. */
async function printStoredOutput(client: KilnClient, job: Job): Promise<void> {
  for (const stream of ['stdout', 'stderr'] as const) {
    const out = stream === 'stdout' ? process.stdout : process.stderr;
    const ref = job.output_refs?.[stream];
    if (ref) out.write((await client.artifacts.download(ref)).bytes);
    else if (job[stream]) out.write(job[stream]!);
  }
}

/** Follows the job's events from the start, printing output until it ends. */
async function followOutput(client: KilnClient, id: string): Promise<Job> {
  for await (const event of client.jobs.events(id)) {
    if (event.type === 'output') (event.chunk.stream === 'stdout' ? process.stdout : process.stderr).write(event.chunk.data);
    else if (event.type === 'truncated') process.stderr.write(`\nkiln: live output truncated (${event.notice.reason}); \`kiln jobs logs ${id}\` prints all of it once the job has ended\n`);
    else if (event.type === 'end') return event.job;
  }
  return client.jobs.get(id);
}

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('list, inspect, follow and cancel jobs');
  withPaging(apiCommand(jobs, 'list', 'list jobs, newest first'))
    .option('--status <status>', 'only jobs in this status (queued, running, succeeded, failed, canceled)')
    .option('--agent <id>', "only this agent's jobs")
    .action(async (flags: ApiFlags & { status?: string; agent?: string; limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).jobs.list({ ...pageQuery(flags), ...(flags.status ? { status: flags.status } : {}), ...(flags.agent ? { agent_id: flags.agent } : {}) });
      show(flags, page, (p) => table(p.items, JOB_COLUMNS) + (p.next_cursor ? `(more: --cursor ${p.next_cursor})\n` : ''));
    });
  apiCommand(jobs, 'get', 'show one job')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).jobs.get(id), jobSummary));
  apiCommand(jobs, 'logs', "print a job's output (-f: follow it live until it ends)")
    .argument('<id>')
    .option('-f, --follow', 'stream the output as it is written, until the job ends')
    .action(async (id: string, flags: ApiFlags & { follow?: boolean }) => {
      const client = clientFor(flags);
      const job = await client.jobs.get(id);
      if (flags.follow && (job.status === 'queued' || job.status === 'running')) await followOutput(client, id);
      else await printStoredOutput(client, job);
    });
  apiCommand(jobs, 'cancel', 'cancel a queued or running job')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).jobs.cancel(id), (j) => `${j.id} ${j.status}`));
  apiCommand(jobs, 'delete', 'delete an ended job with its artifacts')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => {
      await clientFor(flags).jobs.delete(id);
      show(flags, { id, deleted: true }, () => `${id} deleted`);
    });
}
