import type { CompileResult, ExitStatus, Limits, ResourceUsage, Verdict } from '@kiln/core';
import type { EgressSummary } from '../egress/egress-stats.js';

/**
 * The sandbox driver interface. The bubblewrap driver implements it today; a gVisor (`runsc`) driver
 * can slot in later without changing callers.
 */

/** A file to place in the workspace before the run. */
export interface WorkspaceFile {
  /** Relative path inside /workspace; no `..`, no absolute paths. */
  path: string;
  content: Buffer | string;
  /** Octal mode, default 0o644. */
  mode?: number;
}

/**
 * Network rules for one sandbox: `none` (only loopback, the default) or `allowlist` (`host:port`
 * patterns, reached only through the runner's egress proxy; see src/egress).
 */
export interface SandboxNetwork {
  egress: 'none' | 'allowlist';
  allow?: string[];
  /** Who the egress log lines name besides the sandbox. */
  owner?: { tenant_id?: string; job_id?: string; session_id?: string; service_id?: string };
}

export interface OneShotSpec {
  /** argv of the program to run inside the sandbox (argv[0] resolved inside the sandbox's PATH). */
  command: string[];
  files?: WorkspaceFile[];
  stdin?: Buffer | string;
  /** Extra environment; the sandbox starts from a cleared, minimal environment. */
  env?: Record<string, string>;
  /** Working directory inside the sandbox, default /workspace. */
  cwd?: string;
  limits: Limits;
  network?: SandboxNetwork;
  /** Globs under /workspace to collect after the run (default `out/**`). */
  collect?: string[];
  /** Aborting kills the whole sandbox; the verdict becomes `canceled`. */
  signal?: AbortSignal;
  /** Streaming of output as it is produced (bounded by limits.output_bytes). */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /**
   * The command reports its compile step on fd 3 (languages/catalog.ts: a `compile:ok|failed …` line,
   * `times`, the compiler's output): a failed one makes the verdict `compile_error` (the compiler's
   * output is also the run's stderr, there being no run). The command closes fd 3 before running the
   * program, so the program cannot forge it. Set by the language catalog for compiled languages.
   */
  reportsCompileStatus?: boolean;
  /**
   * Keep the program's stdin open after `stdin`: called once, as the program starts, with a writer for
   * more input (`end()` closes it). A job submitted with `stdin_open` (see src/job-stdin).
   */
  openStdin?: (writer: StdinWriter) => void;
}

/** A file collected from the workspace after a run, read without following links. */
export interface CollectedFile {
  path: string;
  size_bytes: number;
  content: Buffer;
}

/** How one command ended: what a persistent sandbox's `exec` answers, and the core of a one-shot run. */
export interface ExecResult {
  verdict: Verdict;
  exit_status: ExitStatus;
  resource_usage: ResourceUsage;
  stdout: Buffer;
  stderr: Buffer;
  /** True when stdout/stderr were cut at limits.output_bytes. */
  output_truncated: boolean;
}

export interface RunResult extends ExecResult {
  files: CollectedFile[];
  /** A compiled language's compile step, apart from the run (`resource_usage` is then the run's alone). */
  compile?: CompileResult;
  /** Why the run ended in system_error, for logs; never shown to other tenants. */
  error?: string;
  /** The sandbox's id (names its cgroups and workspace), for logs and cleanup checks. */
  sandbox_id?: string;
  /** What the sandbox did through the egress proxy (allowlist egress only). */
  egress?: EgressSummary;
}

export interface ExecOptions {
  stdin?: Buffer | string;
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /**
   * Keep stdin open after `stdin`: called once with a writer for more input (`end()` closes stdin).
   * Persistent sandboxes only (session steps).
   */
  openStdin?: (writer: StdinWriter) => void;
}

export interface StdinWriter {
  /** A one-shot run's writer resolves once the pipe took the bytes (back-pressure); a step's at once. */
  write(data: Buffer): void | Promise<void>;
  end(): void;
}

export interface FileEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size_bytes: number;
}

export interface PersistentSpec {
  files?: WorkspaceFile[];
  env?: Record<string, string>;
  limits: Limits;
  network?: SandboxNetwork;
  /**
   * Loopback sockets allowed inside (services listen on 127.0.0.1 in a netns with only `lo`). A warm-pool
   * sandbox built for one-shot jobs says false: no socket but Unix ones, exactly as a one-shot run.
   * @default true
   */
  loopback?: boolean;
}

/** A live persistent sandbox (sessions, services): one init of ours as PID 1, commands over a socket. */
export interface SandboxHandle {
  readonly id: string;
  exec(command: string[] | string, options?: ExecOptions): Promise<ExecResult>;
  readFile(path: string): Promise<Buffer>;
  writeFile(path: string, content: Buffer | string, mode?: number): Promise<void>;
  listFiles(path: string): Promise<FileEntry[]>;
  /** A Unix socket path on the host that reaches 127.0.0.1:port inside the sandbox. */
  exposePort(port: number): Promise<string>;
  /** Kills everything and removes every trace (processes, cgroups, uid, mounts, files). */
  destroy(): Promise<void>;
}

export interface SandboxDriver {
  readonly name: string;
  /**
   * Runs one command in a fresh sandbox. Rejects (KilnError VALIDATION_FAILED) only for a bad spec:
   * limits out of bounds, an empty command, a file path that is absolute or has `..`. Everything that
   * happens to the run itself, including sandbox set-up failures (`system_error`), is in the result.
   */
  run(spec: OneShotSpec): Promise<RunResult>;
  start(spec: PersistentSpec): Promise<SandboxHandle>;
}
