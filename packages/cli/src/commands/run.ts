import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import type { Command } from 'commander';
import { LANGUAGES } from '@kiln/runner';
import type { Job, OutputTruncatedNotice } from '@kiln/core';
import { KilnClient } from '@kiln/sdk';

/** The language a file's extension names, from the catalog. */
export function languageOfFile(file: string): string | undefined {
  const ext = extname(file);
  return LANGUAGES.find((l) => l.extensions.includes(ext))?.name;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15, SIGXCPU: 24, SIGXFSZ: 25 };

/** The exit code `kiln run` ends with: the program's own, 128+signal when killed, 1 when it never ran. */
export function exitCodeOf(job: Job): number {
  if (job.exit_status?.code !== null && job.exit_status?.code !== undefined) return job.exit_status.code;
  if (job.exit_status?.signal) return 128 + (SIGNALS[job.exit_status.signal] ?? 0);
  return job.verdict === 'ok' ? 0 : 1;
}

/** What `kiln run` says on stderr when the live output it printed is incomplete. */
export function truncationNote(notices: OutputTruncatedNotice[], job: Job): string {
  const reasons = [...new Set(notices.map((n) => n.reason))].join(', ');
  const refs = job.output_refs;
  const where = refs?.stdout || refs?.stderr
    ? [refs.stdout ? `stdout in artifact ${refs.stdout}` : '', refs.stderr ? `stderr in artifact ${refs.stderr}` : ''].filter(Boolean).join(', ')
    : `the artifacts of job ${job.id}`;
  return `\nkiln: live output truncated (${reasons}); the full output is in ${where} (GET /v1/artifacts/{id}/content)\n`;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('submit FILE as a job through the API (KILN_URL, KILN_API_KEY), stream its output, exit with its code')
    .argument('<file>', 'the program to run')
    .argument('[args...]', 'arguments for the program (after --)')
    .option('--language <language>', 'the language (default: from the file extension)')
    .option('--stdin <file>', 'a file to send as standard input')
    .option('--url <url>', 'the control plane URL (KILN_URL)')
    .option('--api-key <key>', 'a tenant or agent key (KILN_API_KEY)')
    .action(async (file: string, args: string[], opts: { language?: string; stdin?: string; url?: string; apiKey?: string }) => {
      const language = opts.language ?? languageOfFile(file);
      if (!language) throw new Error(`cannot tell the language of ${file}: pass --language`);
      const code = await readFile(file, 'utf8').catch(() => {
        throw new Error(`cannot read ${file}`);
      });
      const stdin = opts.stdin ? await readFile(opts.stdin, 'utf8') : undefined;
      const client = new KilnClient({ ...(opts.url ? { url: opts.url } : {}), ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) });
      if (!process.env.KILN_API_KEY && !opts.apiKey) throw new Error('no API key: set KILN_API_KEY or pass --api-key');
      const job = await client.jobs.run(
        { language, code, entrypoint: basename(file), args, ...(stdin !== undefined ? { stdin } : {}) },
        {
          onStdout: (d) => process.stdout.write(d),
          onStderr: (d) => process.stderr.write(d),
          onTruncated: (notices, finished) => process.stderr.write(truncationNote(notices, finished)),
        },
      );
      if (job.verdict !== 'ok' && job.verdict !== 'runtime_error') {
        process.stderr.write(`kiln: job ${job.id} ended: ${job.verdict}${job.error ? ` (${job.error})` : ''}\n`);
      }
      process.exitCode = exitCodeOf(job);
    });
}
