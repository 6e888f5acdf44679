import { KilnError, LIMIT_BOUNDS, type CompileLimits, type Limits } from '@kiln/core';
import type { OneShotSpec, WorkspaceFile } from '../sandbox/driver.js';
import { splitRelativePath, UnsafePathError } from '../sandbox/safe-fs.js';
import { findLanguage, LANGUAGES, type LanguageDefinition } from './catalog/index.js';

/** A request file as the API carries it (ARCHITECTURE.md §5). */
export interface CodeFile {
  path: string;
  content: string;
  /** @default 'utf8' */
  encoding?: 'utf8' | 'base64';
}

/** The language-level request the jobs work and `kiln exec` share. */
export interface CodeRequest {
  language: string;
  code?: string;
  files?: readonly CodeFile[];
  /** Which file to run; @default the language's source file name, else the first top-level file with its extension. */
  entrypoint?: string;
  args?: readonly string[];
  stdin?: string | Buffer;
  env?: Record<string, string>;
  /** A compiled language's compile step limits (within the policy already). */
  compileLimits?: CompileLimits;
  /** Extra compiler flags, as separate words after the compiler's name. */
  compilerOptions?: string;
}

/**
 * The environment a compiled language's script reads its compile limits from (catalog.ts), set over
 * the job's own `env` so a job cannot loosen them; and the sandbox's limits, which cover both steps:
 * time of the compile on top of the run's, the larger memory.
 */
function compileStep(request: CodeRequest, limits: Limits): { env: Record<string, string>; limits: Limits } {
  const env: Record<string, string> = {};
  const c = request.compileLimits ?? {};
  if (c.wall_time_ms !== undefined) env.KILN_COMPILE_TIMEOUT_S = (c.wall_time_ms / 1000).toFixed(3);
  if (c.cpu_time_ms !== undefined) env.KILN_COMPILE_CPU_S = String(Math.max(1, Math.ceil(c.cpu_time_ms / 1000)));
  if (request.compilerOptions) env.KILN_COMPILER_OPTIONS = request.compilerOptions;
  const bound = (name: keyof typeof LIMIT_BOUNDS, value: number) => Math.min(LIMIT_BOUNDS[name].max, value);
  return {
    env,
    limits: {
      ...limits,
      ...(c.wall_time_ms !== undefined ? { wall_time_ms: bound('wall_time_ms', limits.wall_time_ms + c.wall_time_ms) } : {}),
      ...(c.cpu_time_ms !== undefined ? { cpu_time_ms: bound('cpu_time_ms', limits.cpu_time_ms + c.cpu_time_ms) } : {}),
      ...(c.memory_bytes !== undefined ? { memory_bytes: Math.max(limits.memory_bytes, c.memory_bytes) } : {}),
    },
  };
}

/** Extra OneShotSpec fields to pass through (collect, signal, callbacks, network). */
export type SpecExtras = Omit<OneShotSpec, 'command' | 'files' | 'stdin' | 'env' | 'limits' | 'reportsCompileStatus'>;

function invalid(field: string, message: string): KilnError {
  return new KilnError('VALIDATION_FAILED', message, { field, errors: [{ field, message }] });
}

/**
 * Turns `{language, code | files, entrypoint?, args?, stdin?}` into a OneShotSpec for the sandbox driver.
 * `language` may be a name or an alias; `toolchain` is the catalog entry to run on (a runner picks it
 * among what it detected by the job's version), @default the language's default entry.
 * Throws UNSUPPORTED_LANGUAGE for a language outside the catalog and VALIDATION_FAILED for a bad request.
 */
export function buildOneShotSpec(
  request: CodeRequest,
  limits: Limits,
  extras: SpecExtras = {},
  toolchain: LanguageDefinition | undefined = findLanguage(request.language),
): OneShotSpec {
  const language = toolchain;
  if (!language) {
    throw new KilnError(
      'UNSUPPORTED_LANGUAGE',
      `unknown language ${JSON.stringify(request.language)}; known: ${[...new Set(LANGUAGES.map((l) => l.name))].join(', ')}`,
      { field: 'language' },
    );
  }
  const files: WorkspaceFile[] = [];
  // Code with files: the files sit beside the code (a workflow step's inputs), the code is the entrypoint.
  if (request.code !== undefined) files.push({ path: request.entrypoint ?? language.sourceFile, content: request.code });
  request.files?.forEach((f, i) => {
    try {
      splitRelativePath(f.path);
    } catch (err) {
      if (err instanceof UnsafePathError) throw invalid(`files.${i}.path`, err.message);
      throw err;
    }
    files.push({
      path: f.path,
      content: f.encoding === 'base64' ? Buffer.from(f.content, 'base64') : f.content,
    });
  });
  if (files.length === 0) throw invalid('code', 'give code or at least one file');
  const paths = files.map((f) => f.path.replace(/^\/+/, ''));
  const ofLanguage = (p: string) => language.extensions.some((ext) => p.endsWith(ext));
  // Without an explicit entrypoint: the language's usual file name, else a top-level file of the
  // language (modules usually sit in folders), else any file of the language.
  const entrypoint =
    request.entrypoint ??
    (paths.includes(language.sourceFile)
      ? language.sourceFile
      : (paths.find((p) => !p.includes('/') && ofLanguage(p)) ?? paths.find(ofLanguage)));
  if (!entrypoint) throw invalid('entrypoint', `no ${language.name} file to run: name one with entrypoint`);
  if (!paths.includes(entrypoint)) throw invalid('entrypoint', `entrypoint ${entrypoint} is not among the files`);

  const compile = language.compiled ? compileStep(request, limits) : { env: {}, limits };
  const env = { ...language.env, ...language.streamingEnv, ...request.env, ...compile.env };
  return {
    ...extras,
    command: language.command(entrypoint, request.args ?? []),
    files,
    ...(request.stdin !== undefined ? { stdin: request.stdin } : {}),
    ...(Object.keys(env).length > 0 ? { env } : {}),
    limits: compile.limits,
    ...(language.compiled ? { reportsCompileStatus: true } : {}),
  };
}
