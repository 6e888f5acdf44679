/**
 * The language catalog: how each language names its source file, how it is compiled and run inside a
 * sandbox, and how its version is read (always inside a sandbox: the host's PATH may hold shims that the
 * sandbox cannot see). Compiled languages compile and run in ONE sandbox run through a small sh script:
 * the compile step runs under its own limits (KILN_COMPILE_TIMEOUT_S, KILN_COMPILE_CPU_S), its output
 * goes to files, and the script reports it on fd 3 (a `compile:ok|failed <exit> <wall µs> <stdout bytes>
 * <stderr bytes>` line, the shell's `times`, then the output) and closes fd 3 before it execs the
 * program, so a compile failure is `compile_error` by evidence and the program cannot forge a report.
 *
 * This module holds the shape and the builders; the entries live in one module per family beside it.
 */

export interface LanguageDefinition {
  /** The name used in job requests and policies. */
  name: string;
  /** Other names a request may use for it (`py`, `js`, `c++`); resolved to `name` before anything else. */
  aliases: readonly string[];
  /**
   * The toolchain, where a language has several side by side (`gcc` and `clang` for c); the version a
   * runner advertises is the toolchain's own, so the versions of one language never collide.
   */
  runtime?: string;
  /** File name used when a request gives `code` rather than files. */
  sourceFile: string;
  /** Extensions that identify an entrypoint among the request's files. */
  extensions: readonly string[];
  /** True when the command compiles first (reports on fd 3). */
  compiled: boolean;
  /** argv that runs `entrypoint` (a path relative to /workspace) with `args`. */
  command(entrypoint: string, args: readonly string[]): string[];
  /** argv that prints the version (stdout or stderr); the first dotted number is taken. */
  versionCommand: readonly string[];
  /**
   * Environment that makes output reach watchers as it is written, not only at exit (stdout is a pipe
   * in the sandbox, so runtimes buffer it by default). A job's own `env` overrides any of these.
   */
  streamingEnv?: Readonly<Record<string, string>>;
  /**
   * Environment the runtime needs to work in a sandbox at all (a writable cache dir, a headless plot
   * backend). Merged under the job's own `env`, like streamingEnv.
   */
  env?: Readonly<Record<string, string>>;
  /** Libraries installed for it that programs may import, as the runner advertises them. */
  libraries?: readonly string[];
}

/** Where compiled programs go: /tmp is the sandbox's own, size-capped with the workspace. */
export const BUILD_DIR = '/tmp/.kiln-build';

/** Bytes of each compile stream the report on fd 3 carries (the rest is counted, not sent). */
export const COMPILE_REPORT_STREAM_BYTES = 64 * 1024;

const shellQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

/**
 * The compile fragment with KILN_COMPILER_OPTIONS (Judge0's `compiler_options`) as separate words after
 * the compiler's name: split on spaces with globbing off, never parsed by the shell as code. Unset, it
 * adds nothing.
 */
function withCompilerOptions(compile: string): string {
  const space = compile.indexOf(' ');
  const [compiler, rest] = space < 0 ? [compile, ''] : [compile.slice(0, space), compile.slice(space)];
  return `set -f; set -- $KILN_COMPILER_OPTIONS; set +f; ${compiler} "$@"${rest}`;
}

/**
 * A compile-then-run script for `sh -c SCRIPT ENTRYPOINT ARGS...` ($0 is the entrypoint). `compile`
 * and `run` are shell fragments; the run fragment starts with `exec` so the program's own exit code
 * and signals come straight through. The compile step runs in a child shell under `ulimit -t` and
 * `timeout -s KILL` (its own CPU and wall limits; none when unset) with its output in files, reported
 * on fd 3 as the file comment says.
 */
export function compileAndRun(compile: string, run: string): string {
  const out = `${BUILD_DIR}/compile.stdout`;
  const err = `${BUILD_DIR}/compile.stderr`;
  return [
    `mkdir -p ${BUILD_DIR}`,
    `kiln_t0=$(date +%s%N)`,
    // A soft CPU limit (SIGXCPU): one above the sandbox's own hard limit cannot be set, and need not be.
    `([ -z "\${KILN_COMPILE_CPU_S:-}" ] || ulimit -S -t "$KILN_COMPILE_CPU_S" 2>/dev/null; exec timeout -s KILL "\${KILN_COMPILE_TIMEOUT_S:-0}" /bin/sh -c ${shellQuote(withCompilerOptions(compile))} "$0") >${out} 2>${err}`,
    `kiln_rc=$?`,
    `kiln_t1=$(date +%s%N)`,
    `if [ $kiln_rc -eq 0 ]; then kiln_c=ok; else kiln_c=failed; fi`,
    `printf 'compile:%s %s %s %s %s\\n' $kiln_c $kiln_rc $(( (kiln_t1 - kiln_t0) / 1000 )) $(wc -c <${out}) $(wc -c <${err}) >&3`,
    `times >&3`,
    `head -c ${COMPILE_REPORT_STREAM_BYTES} ${out} >&3; head -c ${COMPILE_REPORT_STREAM_BYTES} ${err} >&3`,
    `[ $kiln_c = ok ] || exit 1`,
    `exec 3>&-`,
    run,
  ].join('\n');
}

/** What a catalog entry may add beyond its builder's arguments. */
export type LanguageExtras = Partial<Pick<LanguageDefinition, 'aliases' | 'runtime' | 'streamingEnv' | 'env' | 'libraries'>>;

export function interpreted(
  name: string,
  sourceFile: string,
  extensions: string[],
  interpreter: string[],
  versionCommand: string[],
  extras: LanguageExtras = {},
): LanguageDefinition {
  return {
    name,
    aliases: [],
    sourceFile,
    extensions,
    compiled: false,
    command: (entrypoint, args) => [...interpreter, entrypoint, ...args],
    versionCommand,
    ...extras,
  };
}

export function compiledWith(
  name: string,
  sourceFile: string,
  extensions: string[],
  script: (entrypoint: string) => string,
  versionCommand: string[],
  extras: LanguageExtras = {},
): LanguageDefinition {
  return {
    name,
    aliases: [],
    sourceFile,
    extensions,
    compiled: true,
    command: (entrypoint, args) => ['/bin/sh', '-c', script(entrypoint), entrypoint, ...args],
    versionCommand,
    ...extras,
  };
}

/** Extracts the first dotted version number (`3.11.2`, `0.5.12`) from a version command's output. */
export function parseVersion(output: string): string | undefined {
  return /\d+(?:\.\d+)+/.exec(output)?.[0];
}
