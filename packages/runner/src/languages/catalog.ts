/**
 * The language catalog: how each language names its source file, how it is compiled and run inside a
 * sandbox, and how its version is read (always inside a sandbox: the host's PATH may hold shims that the
 * sandbox cannot see). Compiled languages compile and run in ONE sandbox run through a small sh script
 * that reports the compile step on fd 3 (`compile:ok` / `compile:failed`) and closes fd 3 before it
 * execs the program, so a compile failure is `compile_error` by evidence, not by guessing from output.
 */

export interface LanguageDefinition {
  /** The name used in job requests and policies. */
  name: string;
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
}

/** Where compiled programs go: /tmp is the sandbox's own, size-capped with the workspace. */
const BUILD_DIR = '/tmp/.kiln-build';

/**
 * A compile-then-run script for `sh -c SCRIPT ENTRYPOINT ARGS...` ($0 is the entrypoint). `compile`
 * and `run` are shell fragments; the run fragment starts with `exec` so the program's own exit code
 * and signals come straight through.
 */
function compileAndRun(compile: string, run: string): string {
  return [
    `mkdir -p ${BUILD_DIR}`,
    `if ${compile}; then echo compile:ok >&3; else echo compile:failed >&3; exit 1; fi`,
    `exec 3>&-`,
    run,
  ].join('\n');
}

const JAVA_FAST_START = '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto';

function javaClassName(entrypoint: string): string {
  const base = entrypoint.split('/').pop() ?? entrypoint;
  return base.replace(/\.java$/, '');
}

function interpreted(
  name: string,
  sourceFile: string,
  extensions: string[],
  interpreter: string[],
  versionCommand: string[],
): LanguageDefinition {
  return {
    name,
    sourceFile,
    extensions,
    compiled: false,
    command: (entrypoint, args) => [...interpreter, entrypoint, ...args],
    versionCommand,
  };
}

function compiledWith(
  name: string,
  sourceFile: string,
  extensions: string[],
  script: (entrypoint: string) => string,
  versionCommand: string[],
): LanguageDefinition {
  return {
    name,
    sourceFile,
    extensions,
    compiled: true,
    command: (entrypoint, args) => ['/bin/sh', '-c', script(entrypoint), entrypoint, ...args],
    versionCommand,
  };
}

export const LANGUAGES: readonly LanguageDefinition[] = [
  {
    ...interpreted('python', 'main.py', ['.py'], ['python3', '-B'], [
      'python3',
      '-c',
      'import platform; print(platform.python_version())',
    ]),
    streamingEnv: { PYTHONUNBUFFERED: '1' },
  },
  interpreted('node', 'main.js', ['.js', '.mjs', '.cjs'], ['node'], ['node', '-p', 'process.versions.node']),
  interpreted('bash', 'main.sh', ['.sh', '.bash'], ['bash'], [
    'bash',
    '-c',
    'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"',
  ]),
  // dash has no --version; its Debian changelog's first line names the packaged version.
  interpreted('sh', 'main.sh', ['.sh'], ['sh'], ['sh', '-c', 'zcat /usr/share/doc/dash/changelog.Debian.gz | head -n 1']),
  compiledWith(
    'c',
    'main.c',
    ['.c'],
    () => compileAndRun(`gcc -O2 -pipe -std=gnu17 -o ${BUILD_DIR}/prog "$0" -lm`, `exec ${BUILD_DIR}/prog "$@"`),
    ['gcc', '-dumpfullversion'],
  ),
  compiledWith(
    'cpp',
    'main.cpp',
    ['.cpp', '.cc', '.cxx'],
    () => compileAndRun(`g++ -O2 -pipe -std=gnu++17 -o ${BUILD_DIR}/prog "$0"`, `exec ${BUILD_DIR}/prog "$@"`),
    ['g++', '-dumpfullversion'],
  ),
  compiledWith(
    'java',
    'Main.java',
    ['.java'],
    (entrypoint) =>
      compileAndRun(
        `javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -encoding UTF-8 -d ${BUILD_DIR} "$0"`,
        `exec java ${JAVA_FAST_START} -cp ${BUILD_DIR}:/workspace ${javaClassName(entrypoint)} "$@"`,
      ),
    ['javac', '-version'],
  ),
  interpreted('perl', 'main.pl', ['.pl'], ['perl'], ['perl', '-e', 'printf "%vd\\n", $^V']),
  interpreted('tcl', 'main.tcl', ['.tcl'], ['tclsh'], ['sh', '-c', 'echo "puts [info patchlevel]" | tclsh']),
  interpreted('ruby', 'main.rb', ['.rb'], ['ruby'], ['ruby', '-e', 'print RUBY_VERSION']),
  interpreted('php', 'main.php', ['.php'], ['php'], ['php', '-r', 'echo PHP_VERSION;']),
  interpreted('lua', 'main.lua', ['.lua'], ['lua5.4'], ['lua5.4', '-v']),
];

const BY_NAME = new Map(LANGUAGES.map((l) => [l.name, l]));

/** The catalog entry for `name`, or undefined. */
export function findLanguage(name: string): LanguageDefinition | undefined {
  return BY_NAME.get(name);
}

/** Extracts the first dotted version number (`3.11.2`, `0.5.12`) from a version command's output. */
export function parseVersion(output: string): string | undefined {
  return /\d+(?:\.\d+)+/.exec(output)?.[0];
}
