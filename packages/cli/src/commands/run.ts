import { mkdir, opendir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { LANGUAGES } from '@kiln/runner/catalog';
import type { CreateJobInput, Job, OutputTruncatedNotice } from '@kiln/core';
import type { JobHandle, KilnClient } from '@kiln/sdk';
import { apiCommand, CliError, clientFor, EXIT, type ApiFlags } from '../context.js';
import { addLimitFlags, givenLimits, type LimitFlags } from '../limit-flags.js';

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
  return `\nkiln: live output truncated (${reasons}); the full output is in ${where} (kiln artifacts get ID)\n`;
}

/** Bounds of what `kiln run` gathers from a directory (the API's own caps: 256 files, 8 MiB a file). */
const MAX_FILES = 256;
const MAX_FILE_BYTES = 8 * 1024 * 1024;
const SKIPPED_DIRS = new Set(['.git', 'node_modules', '__pycache__', '.kiln']);

export interface InputFile {
  path: string;
  bytes: Buffer;
}

/**
 * The job's files from the command's inputs: a file goes by its name; a directory's files go by their
 * path inside it (so `kiln run app/` with app/main.py and app/lib.py sends main.py and lib.py).
 */
export async function gatherInputs(inputs: string[]): Promise<InputFile[]> {
  const files = new Map<string, InputFile>();
  const add = async (path: string, file: string) => {
    const size = (await stat(file)).size;
    if (size > MAX_FILE_BYTES) throw new CliError(`${file} is ${size} bytes; a job's file may be at most ${MAX_FILE_BYTES}`);
    if (files.size >= MAX_FILES) throw new CliError(`more than ${MAX_FILES} files; a job takes at most ${MAX_FILES}`);
    if (files.has(path)) throw new CliError(`two inputs are both sent as ${path}; rename one`);
    files.set(path, { path, bytes: await readFile(file) });
  };
  for (const input of inputs) {
    const info = await stat(input).catch(() => {
      throw new CliError(`cannot read ${input}: no such file or directory`);
    });
    if (info.isDirectory()) {
      const root = resolve(input);
      const walk = async (dir: string, depth: number): Promise<void> => {
        if (depth > 16) return;
        for await (const entry of await opendir(dir)) {
          const full = join(dir, entry.name);
          if (entry.isDirectory()) {
            if (!SKIPPED_DIRS.has(entry.name)) await walk(full, depth + 1);
          } else if (entry.isFile()) {
            await add(relative(root, full).split(sep).join('/'), full);
          }
        }
      };
      await walk(root, 0);
    } else {
      await add(basename(input), input);
    }
  }
  if (files.size === 0) throw new CliError(`no files in ${inputs.join(', ')}`);
  return [...files.values()];
}

/** The entrypoint: `--entrypoint`, else the first input file, else a directory's main.* or only program. */
export function pickEntrypoint(inputs: string[], files: InputFile[], given?: string): string {
  if (given) {
    if (!files.some((f) => f.path === given)) throw new CliError(`--entrypoint ${given} is not among the files sent (${files.map((f) => f.path).slice(0, 10).join(', ')})`);
    return given;
  }
  const first = files.find((f) => f.path === basename(inputs[0]!));
  if (first && languageOfFile(first.path)) return first.path;
  const programs = files.filter((f) => !f.path.includes('/') && languageOfFile(f.path));
  const main = programs.find((f) => /^main\./.test(f.path));
  if (main) return main.path;
  if (programs.length === 1) return programs[0]!.path;
  throw new CliError('cannot tell which file to run: pass --entrypoint PATH');
}

function isUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** `NAME=VALUE` flags into a record; `--secret-env NAME` takes the value from kiln's own environment. */
function collectPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new CliError(`--env ${value}: expected NAME=VALUE`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}
function collectName(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
function collectList(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `30`, `30s`, `500ms`, `2m` → milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(value);
  if (!m) throw new CliError(`--timeout ${value}: expected a duration such as 30s, 500ms or 2m`);
  const n = Number(m[1]);
  return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000);
}

interface RunFlags extends ApiFlags, LimitFlags {
  language?: string;
  entrypoint?: string;
  stdin?: string;
  env?: Record<string, string>;
  secretEnv?: string[];
  policy?: string;
  agent?: string;
  zone?: string;
  collect?: string[];
  timeout?: string;
  download?: string;
  detach?: boolean;
}

async function readStdin(flag: string): Promise<Buffer> {
  if (flag !== '-') {
    return readFile(flag).catch(() => {
      throw new CliError(`cannot read ${flag} (--stdin)`);
    });
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The job request `kiln run` sends for its inputs and flags. */
export async function buildRequest(inputs: string[], args: string[], flags: RunFlags): Promise<CreateJobInput> {
  const files = await gatherInputs(inputs);
  const entrypoint = pickEntrypoint(inputs, files, flags.entrypoint);
  const language = flags.language ?? languageOfFile(entrypoint);
  if (!language) throw new CliError(`cannot tell the language of ${entrypoint}: pass --language (kiln languages lists them)`);
  const secretEnv: Record<string, string> = {};
  for (const name of flags.secretEnv ?? []) {
    const value = process.env[name];
    if (value === undefined) throw new CliError(`--secret-env ${name}: set ${name} in kiln's environment (the value never goes on a command line)`);
    secretEnv[name] = value;
  }
  const stdin = flags.stdin !== undefined ? await readStdin(flags.stdin) : undefined;
  if (stdin && !isUtf8(stdin)) throw new CliError('--stdin: the API takes text standard input (UTF-8)');
  const limits = givenLimits(flags);
  return {
    language,
    files: files.map((f) => (isUtf8(f.bytes) ? { path: f.path, content: f.bytes.toString('utf8') } : { path: f.path, content: f.bytes.toString('base64'), encoding: 'base64' as const })),
    entrypoint,
    args,
    ...(stdin !== undefined ? { stdin: stdin.toString('utf8') } : {}),
    ...(flags.env ? { env: flags.env } : {}),
    ...(Object.keys(secretEnv).length > 0 ? { secret_env: secretEnv } : {}),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    ...(flags.policy ? { policy_id: flags.policy } : {}),
    ...(flags.agent ? { agent_id: flags.agent } : {}),
    ...(flags.zone ? { zone: flags.zone } : {}),
    ...(flags.collect ? { collect: flags.collect } : {}),
  };
}

/** A path an artifact may be written to under `dir`: never outside it. */
export function safeTarget(dir: string, name: string): string | undefined {
  const target = resolve(dir, name);
  const root = resolve(dir);
  return target.startsWith(root + sep) ? target : undefined;
}

/** Downloads the job's collected files (and its stdout/stderr artifacts) into `dir`; returns what was written. */
export async function downloadArtifacts(client: KilnClient, job: Job, dir: string): Promise<string[]> {
  const written: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.artifacts.list({ owner_type: 'job', owner_id: job.id, limit: 100, ...(cursor ? { cursor } : {}) });
    for (const art of page.items) {
      const target = safeTarget(dir, art.name);
      if (!target) {
        process.stderr.write(`kiln: skipped artifact ${art.id}: its name ${JSON.stringify(art.name)} leads outside ${dir}\n`);
        continue;
      }
      const { bytes } = await client.artifacts.download(art.id);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, bytes);
      written.push(target);
    }
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return written;
}

/**
 * Ctrl-C once cancels the job (its end still streams in); twice detaches, leaving it to kiln.
 * Returns the function that removes the handlers.
 */
function interruptHandling(handle: JobHandle): () => void {
  let presses = 0;
  const onSigint = () => {
    presses += 1;
    if (presses === 1) {
      process.stderr.write(`\nkiln: canceling job ${handle.id} (Ctrl-C again to detach and leave it running)\n`);
      handle.cancel().catch((err: Error) => process.stderr.write(`kiln: could not cancel job ${handle.id}: ${err.message}\n`));
    } else {
      process.stderr.write(`kiln: detached; job ${handle.id} goes on: kiln jobs get ${handle.id}\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  return () => process.off('SIGINT', onSigint);
}

async function runCommand(inputs: string[], args: string[], flags: RunFlags): Promise<void> {
  const body = await buildRequest(inputs, args, flags);
  const client = clientFor(flags);
  const timeoutMs = flags.timeout !== undefined ? parseDuration(flags.timeout) : undefined;
  const handle = await client.jobs.start(body, {
    ...(flags.json
      ? {}
      : {
          onStdout: (d: string) => process.stdout.write(d),
          onStderr: (d: string) => process.stderr.write(d),
          onTruncated: (notices: OutputTruncatedNotice[], finished: Job) => process.stderr.write(truncationNote(notices, finished)),
        }),
    ...(timeoutMs !== undefined ? { timeoutMs, onTimeout: 'cancel' as const } : {}),
  });
  if (flags.detach) {
    process.stdout.write(flags.json ? `${JSON.stringify(handle.job, null, 2)}\n` : `${handle.id}\n`);
    return;
  }
  const release = interruptHandling(handle);
  let job: Job;
  try {
    job = await handle.wait();
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError') {
      throw new CliError(`job ${handle.id} did not end within --timeout ${flags.timeout}; it was canceled`, EXIT.timeout);
    }
    throw err;
  } finally {
    release();
  }
  if (flags.download) {
    const written = await downloadArtifacts(client, job, flags.download);
    if (!flags.json) process.stderr.write(`kiln: ${written.length} artifact(s) of job ${job.id} saved in ${flags.download}\n`);
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
  } else if (job.verdict !== 'ok' && job.verdict !== 'runtime_error') {
    process.stderr.write(`kiln: job ${job.id} ended: ${job.verdict}${job.error ? ` (${job.error})` : ''}\n`);
  }
  process.exitCode = job.status === 'canceled' && !job.exit_status ? 130 : exitCodeOf(job);
}

/** `kiln run`: what to run and its arguments after `--` (split off by main before commander parses). */
export function registerRun(program: Command, programArgs: () => string[]): void {
  const cmd = apiCommand(program, 'run', 'run files or a directory as a job: streams its output, exits with its exit code')
    .argument('<inputs...>', 'the program file(s), or a directory whose files are all sent; arguments for the program go after --')
    .option('--language <language>', 'the language (default: from the entrypoint\'s extension)')
    .option('--entrypoint <path>', 'the file to run (default: the first file, or main.* in a directory)')
    .option('--stdin <file>', 'a file to send as standard input (`-` for this terminal\'s)')
    .option('--env <NAME=VALUE>', 'an environment variable for the program (repeatable)', collectPair)
    .option('--secret-env <NAME>', 'pass NAME from this environment as a secret (sealed, never logged; repeatable)', collectName)
    .option('--policy <id>', 'the policy to check the job against (default: the tenant\'s "default")')
    .option('--agent <id>', 'submit for this agent (tenant keys only)')
    .option('--zone <zone>', 'run on a runner of this zone')
    .option('--collect <glob>', 'files to keep as artifacts (repeatable; default out/**)', collectList)
    .option('--download <dir>', 'save the job\'s artifacts into DIR when it ends')
    .option('--timeout <duration>', 'cancel the job and exit 124 if it has not ended after this long (30s, 500ms, 2m)')
    .option('--detach', 'submit, print the job id, and exit without waiting');
  addLimitFlags(cmd, 'policy');
  cmd.action(async (inputs: string[], flags: RunFlags) => runCommand(inputs, programArgs(), flags));
}
