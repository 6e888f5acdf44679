import { compilerOptionsSchema, KilnError } from '@kiln/core';
import { z } from 'zod';

const MiB = 1024 * 1024;
const text = z.string().max(8 * MiB);
const seconds = z.number().min(0).max(3600);
const kilobytes = z.number().int().min(0).max(64 * 1024 * 1024);

/** Judge0's `number_of_runs` bound (its own default maximum). */
export const JUDGE0_MAX_RUNS = 20;
/** Submissions in one batch (Judge0's default maximum). */
export const JUDGE0_MAX_BATCH = 20;

/**
 * A Judge0 CE submission as its documentation lists it. Unknown fields are ignored, as Judge0 does;
 * limits are in Judge0's units: seconds (fractions allowed) and kilobytes.
 */
export const judge0SubmissionSchema = z.object({
  source_code: text.nullish(),
  language_id: z.number().int(),
  // Words of letters, digits and a few signs; kiln passes them as separate arguments, never to a shell.
  compiler_options: compilerOptionsSchema.nullish(),
  command_line_arguments: z.string().max(4096).nullish(),
  stdin: text.nullish(),
  expected_output: text.nullish(),
  cpu_time_limit: seconds.nullish(),
  cpu_extra_time: seconds.nullish(),
  wall_time_limit: seconds.nullish(),
  memory_limit: kilobytes.nullish(),
  stack_limit: kilobytes.nullish(),
  max_processes_and_or_threads: z.number().int().min(1).max(4096).nullish(),
  enable_per_process_and_thread_time_limit: z.boolean().nullish(),
  enable_per_process_and_thread_memory_limit: z.boolean().nullish(),
  max_file_size: kilobytes.nullish(),
  redirect_stderr_to_stdout: z.boolean().nullish(),
  enable_network: z.boolean().nullish(),
  number_of_runs: z.number().int().min(1).max(JUDGE0_MAX_RUNS).nullish(),
  additional_files: z.string().max(8 * MiB).nullish(),
  callback_url: z.string().max(2048).nullish(),
});
export type Judge0SubmissionInput = z.infer<typeof judge0SubmissionSchema>;

/** Judge0's validation answer: `{"field": ["message", …]}`, 422. */
export class Judge0ValidationError extends Error {
  readonly status = 422;
  constructor(readonly fields: Record<string, string[]>) {
    super(Object.entries(fields).map(([f, m]) => `${f} ${m.join(', ')}`).join('; '));
  }

  /** A kiln validation error with a field (the zip, the callback URL) in Judge0's shape. */
  static from(err: KilnError): Judge0ValidationError {
    return new Judge0ValidationError({ [err.field ?? 'base']: [err.message] });
  }
}

export function judge0Invalid(field: string, message: string): Judge0ValidationError {
  return new Judge0ValidationError({ [field]: [message] });
}

/** The schema's complaints as Judge0 words them. */
export function judge0Issues(error: z.ZodError): Judge0ValidationError {
  const fields: Record<string, string[]> = {};
  for (const issue of error.issues) {
    const field = issue.path.map(String).join('.') || 'base';
    (fields[field] ??= []).push(issue.code === 'invalid_type' && issue.input === undefined ? "can't be blank" : issue.message);
  }
  return new Judge0ValidationError(fields);
}

/** Decodes a field sent with `base64_encoded=true`; refuses what is not base64. */
export function decodeBase64Field(field: string, value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const compact = value.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) throw judge0Invalid(field, 'is not valid base64');
  return Buffer.from(compact, 'base64').toString('utf8');
}

/**
 * `command_line_arguments` as argv: split on whitespace, with '…' and "…" grouping, the way a shell
 * splits words, but nothing else a shell does (no variables, globs or commands).
 */
export function splitArguments(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let quote: '"' | "'" | null = null;
  let inWord = false;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) args.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (quote) throw judge0Invalid('command_line_arguments', 'has an unclosed quote');
  if (inWord) args.push(current);
  return args;
}
