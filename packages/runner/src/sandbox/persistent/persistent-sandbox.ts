import { existsSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type ExitStatus, KilnError, LIMIT_BOUNDS, type Limits } from '@kiln/core';
import type { EgressLease } from '../../egress/egress-proxy.js';
import type { EgressSummary } from '../../egress/egress-stats.js';
import { SANDBOX_BASE_ENV } from '../bwrap-args.js';
import type { SandboxCgroup } from '../cgroups/index.js';
import type { ExecOptions, ExecResult, FileEntry, SandboxHandle } from '../driver.js';
import type { LaunchedProcess } from '../process-launcher.js';
import type { UidLease } from '../uid-pool.js';
import { decideVerdict } from '../verdict.js';
import { UnsafePathError, type Workspace } from '../workspace.js';
import { runInitCommand } from './init-client.js';
import { PortRelay } from './port-relay.js';
import { releaseAll } from './start.js';

const WORKSPACE_INSIDE = '/workspace';
/** The cgroup CPU watchdog never polls more often than this. */
const CPU_WATCH_MIN_MS = 10;
/** How long past a command's timeout the init may take to report it before it is presumed wedged. */
const INIT_ANSWER_GRACE_MS = 10_000;
/** Largest file readFile returns (the workspace itself is capped by disk_bytes). */
const MAX_READ_BYTES = 64 * 1024 * 1024;

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(osConstants.signals).map(([name, num]) => [num as number, name]),
);

export interface PersistentSandboxParts {
  id: string;
  limits: Limits;
  baseEnv: Record<string, string>;
  /** kiln-launch, which became the outer bwrap. */
  child: LaunchedProcess;
  /** Resolves with its exit code or signal once it has exited and its streams closed. */
  exited: Promise<string>;
  cgroup: SandboxCgroup;
  workspace: Workspace;
  lease: UidLease;
  /** Host path of the init's socket. */
  controlSocket: string;
  /** Host-only folder for exposed ports' sockets. */
  portsDir: string;
  stderrTail: () => string;
  trackCleanup: (done: Promise<void>) => void;
  /** Its way out through the runner's egress proxy (allowlist egress only). */
  egress?: EgressLease;
}

/**
 * A live persistent sandbox. Commands go to kiln-init over its socket, one connection each, so several
 * may run at once; per-command accounting (the cgroup's CPU and peak memory counters are reset before
 * each command) is exact when commands run one at a time, as session steps do.
 */
export class PersistentSandbox implements SandboxHandle {
  readonly id: string;
  private readonly relays = new Map<number, Promise<PortRelay>>();
  private endedBecause: string | undefined;
  private destroying: Promise<void> | undefined;
  /** What the sandbox did through the egress proxy, once destroyed (allowlist egress only). */
  egressSummary: EgressSummary | undefined;
  /** Resolves when the outer bwrap has exited (the sandbox is gone or going). */
  private readonly exited: Promise<void>;

  constructor(private readonly parts: PersistentSandboxParts) {
    this.id = parts.id;
    this.exited = parts.exited.then((how) => {
      this.endedBecause ??= `its init ended (${how})${parts.stderrTail() ? `: ${parts.stderrTail()}` : ''}`;
    });
  }

  /**
   * The environment every command gets on top of the sandbox's base one. A sandbox taken from the warm
   * pool was built before its user was known: its session's environment is set here, before any command.
   */
  useEnv(env: Record<string, string>): void {
    this.parts.baseEnv = { ...env };
  }

  /**
   * The environment a command gets: the sandbox's base (with the egress proxy's variables, for an
   * allowlist sandbox), then `extra`.
   */
  commandEnv(extra: Record<string, string> = {}): Record<string, string> {
    return { ...SANDBOX_BASE_ENV, ...this.parts.baseEnv, ...extra };
  }

  /** False once the sandbox was destroyed or its init died. */
  get alive(): boolean {
    return this.endedBecause === undefined;
  }

  async exec(command: string[] | string, options: ExecOptions = {}): Promise<ExecResult> {
    this.assertAlive();
    const argv = typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
    if (argv.length === 0 || argv.some((a) => typeof a !== 'string' || a.includes('\0'))) {
      throw new KilnError('VALIDATION_FAILED', 'the command must be a non-empty argv of strings without NUL bytes', {
        field: 'command',
      });
    }
    const { limits } = this.parts;
    const timeoutMs = options.timeoutMs ?? limits.wall_time_ms;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > LIMIT_BOUNDS.wall_time_ms.max) {
      throw new KilnError('VALIDATION_FAILED', `timeoutMs must be an integer in 1..${LIMIT_BOUNDS.wall_time_ms.max}`, {
        field: 'timeoutMs',
      });
    }
    const env = this.commandEnv(options.env);
    for (const [name, value] of Object.entries(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || value.includes('\0')) {
        throw new KilnError('VALIDATION_FAILED', `bad environment variable ${JSON.stringify(name)}`, { field: 'env' });
      }
    }
    const cwd = insidePath(options.cwd ?? WORKSPACE_INSIDE);

    // Our own kill switch: the caller's abort, and the cgroup CPU watchdog.
    const kill = new AbortController();
    let cpuTimeExceeded = false;
    const onCallerAbort = () => kill.abort();
    if (options.signal?.aborted) kill.abort();
    options.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const { cgroup } = this.parts;
    cgroup.resetCounters();
    let cpuTimer: NodeJS.Timeout | undefined;
    const watchCpu = (delayMs: number) => {
      cpuTimer = setTimeout(() => {
        const usedMs = cgroup.usage().cpuTimeMs;
        if (usedMs >= limits.cpu_time_ms) {
          cpuTimeExceeded = true;
          kill.abort();
        } else watchCpu(Math.max(CPU_WATCH_MIN_MS, limits.cpu_time_ms - usedMs));
      }, delayMs);
    };
    watchCpu(Math.max(CPU_WATCH_MIN_MS, limits.cpu_time_ms));

    const started = performance.now();
    try {
      const result = await runInitCommand(
        this.parts.controlSocket,
        { argv, env, cwd, timeoutMs },
        {
          ...(options.stdin !== undefined ? { stdin: Buffer.from(options.stdin) } : {}),
          outputLimitBytes: limits.output_bytes,
          ...(options.onStdout ? { onStdout: options.onStdout } : {}),
          ...(options.onStderr ? { onStderr: options.onStderr } : {}),
          signal: kill.signal,
          ...(options.openStdin ? { openStdin: options.openStdin } : {}),
          // The init enforces timeoutMs itself; this only catches an init that stopped answering.
          answerDeadlineMs: timeoutMs + INIT_ANSWER_GRACE_MS,
        },
      );
      const wallTimeMs = performance.now() - started;
      const usage = cgroup.usage();
      const exit: ExitStatus =
        result.exit.signalNumber !== null
          ? { code: null, signal: SIGNAL_NAMES.get(result.exit.signalNumber) ?? `SIG${result.exit.signalNumber}` }
          : { code: result.exit.code, signal: null };
      // A shell string's shell reports its last child's death by signal N as exit 128+N: for the two
      // rlimit signals that is the evidence of the limit (the exit status itself stays as reported).
      const limitSignal = typeof command === 'string' ? shellReportedLimitSignal(exit.code) : undefined;
      const canceled = options.signal?.aborted === true && !cpuTimeExceeded;
      return {
        verdict: decideVerdict({
          canceled,
          outputExceeded: result.outputLimitHit,
          oomKills: usage.oomKills,
          wallTimeExceeded: result.exit.timedOut,
          cpuTimeExceeded: cpuTimeExceeded || usage.cpuTimeMs > limits.cpu_time_ms,
          compileFailed: false,
          exit: limitSignal ? { code: null, signal: limitSignal } : exit,
        }),
        exit_status: exit,
        resource_usage: {
          cpu_time_ms: round3(usage.cpuTimeMs),
          wall_time_ms: round3(wallTimeMs),
          memory_peak_bytes: usage.memoryPeakBytes,
          output_bytes: result.outputBytes,
        },
        stdout: result.stdout,
        stderr: result.stderr,
        output_truncated: result.outputLimitHit,
      };
    } catch (err) {
      // A connection that broke because the sandbox died is reported as that, clearly.
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 100))]);
      this.assertAlive();
      throw new KilnError('INTERNAL', `sandbox ${this.id}: ${(err as Error).message}`);
    } finally {
      if (cpuTimer) clearTimeout(cpuTimer);
      options.signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  async readFile(filePath: string): Promise<Buffer> {
    this.assertAlive();
    return fileOperation(filePath, () => this.parts.workspace.readFile(workspaceRelative(filePath), MAX_READ_BYTES));
  }

  async writeFile(filePath: string, content: Buffer | string, mode = 0o644): Promise<void> {
    this.assertAlive();
    fileOperation(filePath, () => this.parts.workspace.writeFile(workspaceRelative(filePath), content, mode));
  }

  async listFiles(dirPath: string): Promise<FileEntry[]> {
    this.assertAlive();
    const relative = workspaceRelative(dirPath, true);
    return fileOperation(dirPath, () => this.parts.workspace.listFiles(relative)).map((e) => ({
      path: relative === '' ? e.name : `${relative}/${e.name}`,
      type: e.type,
      size_bytes: e.size_bytes,
    }));
  }

  async exposePort(port: number): Promise<string> {
    this.assertAlive();
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new KilnError('VALIDATION_FAILED', 'port must be an integer in 1..65535', { field: 'port' });
    }
    let relay = this.relays.get(port);
    if (!relay) {
      relay = PortRelay.listen(`${this.parts.portsDir}/${port}.sock`, this.parts.controlSocket, port);
      this.relays.set(port, relay);
      relay.catch(() => this.relays.delete(port));
    }
    return (await relay).path;
  }

  /** Bytes the sandbox's memory cgroup holds now (page cache included): an idle sandbox's footprint. */
  memoryUsageBytes(): number {
    for (const bind of this.parts.cgroup.binds) {
      for (const file of ['memory.usage_in_bytes', 'memory.current']) {
        const p = `${bind.source}/${file}`;
        if (existsSync(p)) return Number(readFileSync(p, 'utf8').trim());
      }
    }
    throw new Error('no memory accounting file in the sandbox cgroup');
  }

  /** Host pids of every process in the sandbox (the outer bwrap, the init, commands). */
  pids(): number[] {
    return this.parts.cgroup.pids();
  }

  /** The sandbox's cgroup folders on the host (one per controller on v1). */
  cgroupDirs(): string[] {
    return this.parts.cgroup.procsFiles.map((f) => path.dirname(f));
  }

  /** Host pid of kiln-init (PID 1 inside): the child of the outer bwrap. */
  initHostPid(): number | undefined {
    const outer = this.parts.child.pid;
    if (outer === undefined) return undefined;
    try {
      const children = readFileSync(`/proc/${outer}/task/${outer}/children`, 'utf8').trim().split(/\s+/);
      return children[0] ? Number(children[0]) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Host paths this sandbox holds, for tests and diagnostics. */
  get hostPaths(): { workspaceRoot: string; controlSocket: string; portsDir: string } {
    return {
      workspaceRoot: this.parts.workspace.root,
      controlSocket: this.parts.controlSocket,
      portsDir: this.parts.portsDir,
    };
  }

  get uid(): number {
    return this.parts.lease.uid;
  }

  /** The sandbox's workspace on the host (what /workspace is bound to), for streamed file transfers. */
  get workspace(): Workspace {
    return this.parts.workspace;
  }

  /**
   * Kills every process (the whole cgroup, the outer bwrap with it: the pid namespace and its mounts end
   * with them), closes the port relays, then removes the cgroup, unmounts the workspace (control folder
   * and port sockets included) and gives the uid back. Idempotent; resolves when everything is gone.
   */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      this.endedBecause ??= 'it was destroyed';
      const relays = await Promise.allSettled([...this.relays.values()]);
      await Promise.all(relays.map((r) => (r.status === 'fulfilled' ? r.value.close() : undefined)));
      // The init first: its death ends the pid namespace and the outer bwrap reaps it. Killing the whole
      // cgroup at once would orphan the init to the host's PID 1, leaving a zombie for a while.
      const initPid = this.initHostPid();
      if (initPid !== undefined) {
        try {
          process.kill(initPid, 'SIGKILL');
        } catch {
          // already gone
        }
        await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))]);
      }
      this.parts.cgroup.killAll();
      this.parts.child.kill('SIGKILL');
      await this.exited;
      this.egressSummary = await this.parts.egress?.close();
      const removal = releaseAll(this.parts.cgroup, this.parts.workspace, this.parts.lease);
      this.parts.trackCleanup(removal);
      await removal;
    })();
    return this.destroying;
  }

  private assertAlive(): void {
    if (this.endedBecause !== undefined) {
      throw new KilnError('UNAVAILABLE', `sandbox ${this.id} is gone: ${this.endedBecause}`);
    }
  }
}

function shellReportedLimitSignal(code: number | null): string | undefined {
  if (code === 128 + osConstants.signals.SIGXCPU) return 'SIGXCPU';
  if (code === 128 + osConstants.signals.SIGXFSZ) return 'SIGXFSZ';
  return undefined;
}

/** Workspace errors as KilnErrors: a refused path (a planted link, `..`) and a missing file are the caller's. */
function fileOperation<T>(requested: string, operation: () => T): T {
  try {
    return operation();
  } catch (err) {
    if (err instanceof KilnError) throw err;
    if (err instanceof UnsafePathError) {
      throw new KilnError('VALIDATION_FAILED', `${requested}: ${err.message}`, { field: 'path' });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KilnError('NOT_FOUND', `${requested} does not exist in /workspace`);
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new KilnError('PAYLOAD_TOO_LARGE', `${requested}: the workspace is full`);
    throw err;
  }
}

/** A path inside the sandbox: absolute, or relative to /workspace; normalised, no `..` escapes it. */
function insidePath(p: string): string {
  if (p.includes('\0')) throw new KilnError('VALIDATION_FAILED', 'cwd contains NUL', { field: 'cwd' });
  return path.posix.resolve(WORKSPACE_INSIDE, p);
}

/** `/workspace/a/b` or `a/b` → `a/b`; anything outside /workspace is refused. */
function workspaceRelative(p: string, allowRoot = false): string {
  const resolved = insidePath(p);
  if (resolved === WORKSPACE_INSIDE && allowRoot) return '';
  if (!resolved.startsWith(`${WORKSPACE_INSIDE}/`)) {
    throw new KilnError('VALIDATION_FAILED', `${p} is not inside ${WORKSPACE_INSIDE}`, { field: 'path' });
  }
  return resolved.slice(WORKSPACE_INSIDE.length + 1);
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;
