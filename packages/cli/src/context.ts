import { Command, InvalidArgumentError } from 'commander';
import {
  AbortError,
  AuthenticationError,
  ConnectionError,
  ForbiddenError,
  KilnApiError,
  KilnClient,
  NotFoundError,
  PolicyViolationError,
  RateLimitError,
  TimeoutError,
  ValidationError,
} from '@kiln/sdk';

/**
 * The exit codes of kiln's own failures. `kiln run` exits with the program's code, so these sit in a
 * band programs rarely use (as docker's 125–127 do); `--json` gives a program's exact exit_status.
 */
export const EXIT = {
  /** A flag, argument or input file is wrong (nothing was sent). */
  usage: 121,
  /** The key is missing, refused (401) or may not do this (403). */
  auth: 122,
  /** The control plane could not be reached. */
  unreachable: 123,
  /** `--timeout` passed before the job ended. */
  timeout: 124,
  /** The API refused or failed the request (validation, policy, not found, conflict, rate, 5xx). */
  api: 125,
} as const;

/** A failure of kiln itself, with what to do about it and the exit code it ends with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.usage,
  ) {
    super(message);
  }
}

export interface ApiFlags {
  url?: string;
  apiKey?: string;
  json?: boolean;
}

/**
 * A subcommand that talks to the API: `--url`, `--api-key` and `--json` on every one, so command
 * groups added later (workflows, sessions…) get the same flags by calling this.
 */
export function apiCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .option('--url <url>', 'the control plane URL (default: KILN_URL, else http://127.0.0.1:8080)')
    .option('--api-key <key>', 'an operator, tenant or agent key (default: KILN_API_KEY; prefer the variable: argv is public)')
    .option('--json', 'print the answer as JSON, for scripts');
}

/** The API client for a command's flags; refuses to start without a key. */
export function clientFor(flags: ApiFlags): KilnClient {
  const apiKey = flags.apiKey ?? process.env.KILN_API_KEY;
  if (!apiKey) {
    throw new CliError('no API key: set KILN_API_KEY (the operator key of `kiln up` is in .kiln/admin.key) or pass --api-key', EXIT.auth);
  }
  return new KilnClient({ ...(flags.url ? { url: flags.url } : {}), apiKey });
}

/** Prints `value` as JSON with --json, else what `human` makes of it. */
export function show<T>(flags: ApiFlags, value: T, human: (v: T) => string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(value, null, 2)}\n` : ensureNewline(human(value)));
}

const ensureNewline = (s: string) => (s === '' || s.endsWith('\n') ? s : `${s}\n`);

/** Aligned columns with a header, for lists on a terminal. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cells = [columns.map((c) => c.toUpperCase()), ...rows.map((r) => columns.map((c) => cell(r[c])))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((v, i) => (i === row.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** `key: value` lines for one object on a terminal (nested values as compact JSON). */
export function fields(value: object): string {
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${cell(v)}`).join('\n') + '\n';
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/[\u0000-\u001f\u007f]/g, ' ');
}

/** A page list's `--limit`/`--cursor` flags. */
export function withPaging(cmd: Command): Command {
  return cmd.option('--limit <n>', 'at most this many (the server caps it)', wholeNumber).option('--cursor <cursor>', 'the next_cursor of the previous page');
}

export function pageQuery(flags: { limit?: number; cursor?: string }): { limit?: number; cursor?: string } {
  return { ...(flags.limit !== undefined ? { limit: flags.limit } : {}), ...(flags.cursor ? { cursor: flags.cursor } : {}) };
}

export function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('is too large');
  return n;
}

/** What a failed command says on stderr (what failed, what to do) and the code it exits with. */
export function describeFailure(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof ConnectionError) {
    return { message: `cannot reach ${err.url} (${err.reason}): is kiln up running? set KILN_URL or pass --url`, exitCode: EXIT.unreachable };
  }
  if (err instanceof TimeoutError) return { message: err.message, exitCode: EXIT.timeout };
  if (err instanceof AbortError) return { message: err.message, exitCode: 130 };
  if (err instanceof KilnApiError) {
    const ceiling = typeof err.problem.ceiling === 'number' ? `ceiling ${err.problem.ceiling}` : '';
    const field = err.field && !err.message.includes(err.field) ? err.field : '';
    const at = field || ceiling ? ` (${[field, ceiling].filter(Boolean).join(', ')})` : '';
    const base = `${err.message}${at}`;
    if (err instanceof AuthenticationError) return { message: `${base}: the key was refused; set KILN_API_KEY to a key kiln issued (not revoked)`, exitCode: EXIT.auth };
    if (err instanceof ForbiddenError) return { message: `${base}: this key may not do that; use a tenant admin or the operator key`, exitCode: EXIT.auth };
    if (err instanceof NotFoundError) return { message: `${base}: check the id (the list commands show them; another tenant's look the same as missing ones)`, exitCode: EXIT.api };
    if (err instanceof PolicyViolationError) return { message: `${base}: ask within the policy (kiln policies get ID) or publish one that allows it`, exitCode: EXIT.api };
    if (err instanceof RateLimitError) return { message: `${base}: retry in ${err.retryAfter ?? 'a few'} s`, exitCode: EXIT.api };
    if (err instanceof ValidationError) return { message: `${base}: fix the request and try again`, exitCode: EXIT.api };
    return { message: base, exitCode: EXIT.api };
  }
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string' && err.code.startsWith('commander.')) {
    return { message: '', exitCode: EXIT.usage };
  }
  return { message: err instanceof Error ? err.message : String(err), exitCode: EXIT.api };
}
