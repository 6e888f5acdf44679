import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { KilnError, limitsSchema, newId, parseOrThrow, type CompileResult, type Limits } from '@kiln/core';
import { COMPILE_REPORT_STREAM_BYTES } from '../languages/catalog/define.js';
import { dirname } from 'node:path';
import { buildBwrapArgs, ownSystemFolders, EXEC_HELPER_INSIDE, hideBwrapArgs } from './bwrap-args.js';
import type { CgroupBackend, SandboxCgroup } from './cgroups/index.js';
import { EGRESS_DIR_INSIDE, type EgressLease, type EgressProxy } from '../egress/egress-proxy.js';
import type { OneShotSpec, RunResult, StdinWriter } from './driver.js';
import {
  BWRAP_ARGS_FD,
  buildLaunchArgs,
  encodeSyncData,
  PAYLOAD_ARGV_FD,
  rlimitsFor,
  perSandboxMounts,
  SECCOMP_FD,
} from './launch-args.js';
import { nativeHelperPath, requireBwrap } from './native-paths.js';
import { launchProcess } from './process-launcher.js';
import { sandboxEtcDir } from './sandbox-etc.js';
import { seccompProgramPath } from './seccomp.js';
import type { UidLease, UidPool } from './uid-pool.js';
import { decideVerdict, decodeExit } from './verdict.js';
import { refuseUnsafeFilePaths, Workspace } from './workspace.js';

/** What a one-shot run needs from its driver. */
export interface OneShotDeps {
  cgroups: CgroupBackend;
  uids: UidPool;
  /** Called with the promise of each sandbox's asynchronous cleanup (cgroup drain, unmount, uid release). */
  trackCleanup: (done: Promise<void>) => void;
  /** The runner's egress proxy, asked for only when a run's policy allows egress. */
  egress: () => EgressProxy;
}

/** The compile report on fd 3: a header, `times`, and at most COMPILE_REPORT_STREAM_BYTES per stream. */
const COMPILE_REPORT_MAX = 4096 + 2 * COMPILE_REPORT_STREAM_BYTES;
/** The CPU watchdog never sleeps less than this, so it costs nothing on short runs. */
const CPU_WATCH_MIN_MS = 10;
/** stdio index of the kiln-launch handshake socket (3: compile status, 4: bwrap's JSON status). */
const SYNC_FD = 5;

/**
 * Runs one command in a fresh sandbox and tears everything down. The result comes back as soon as the
 * payload is gone and its accounting is read; removing the cgroup (whose pids drain for a second or two),
 * unmounting the workspace and releasing the uid happen afterwards, reported through `trackCleanup`.
 */
export async function runOneShot(spec: OneShotSpec, deps: OneShotDeps): Promise<RunResult> {
  const limits = parseOrThrow(limitsSchema, spec.limits, 'limits');
  if (spec.command.length === 0) throw new KilnError('VALIDATION_FAILED', 'the command is empty', { field: 'command' });
  // Bad input is refused before any resource is taken.
  refuseUnsafeFilePaths(spec.files ?? []);
  if (spec.signal?.aborted) return cancelledBeforeStart();

  const sandboxId = newId('sandbox');
  let lease: UidLease | undefined;
  let workspace: Workspace | undefined;
  let cgroup: SandboxCgroup | undefined;
  let egress: EgressLease | undefined;
  try {
    lease = deps.uids.acquire();
    // Allowlist egress: a proxy socket of this sandbox's own, reached from inside through kiln-exec's relay.
    if (spec.network?.egress === 'allowlist') {
      egress = await deps.egress().open({ sandbox_id: sandboxId, ...spec.network.owner, allow: spec.network.allow ?? [], uid: lease.uid, gid: lease.gid });
    }
    // kiln-launch mounts the workspace and waits on the sync fd while we fill it (Workspace.prepare).
    const prepared = Workspace.prepare({ uid: lease.uid, gid: lease.gid, diskBytes: limits.disk_bytes, id: sandboxId });
    workspace = prepared.workspace;
    cgroup = deps.cgroups.create(sandboxId, { memoryBytes: limits.memory_bytes, pids: limits.pids });
    const execHelper = nativeHelperPath('kiln-exec');
    const bwrapArgs = buildBwrapArgs({
      workspaceDir: workspace.workDir,
      tmpDir: workspace.tmpDir,
      shmDir: workspace.shmDir,
      seccompFd: SECCOMP_FD,
      cgroupBinds: cgroup.binds,
      // The sandbox's own /usr, /etc and /dev (kiln-launch mounts them under the workspace root): no lock
      // on them, nor on the helper, is seen by another sandbox, and mountinfo names no host folder.
      ...ownSystemFolders(workspace.root),
      extraBinds: [
        { source: `${workspace.root}/kiln/kiln-exec`, dest: EXEC_HELPER_INSIDE },
        ...(egress ? [{ source: egress.hostDir, dest: EGRESS_DIR_INSIDE }] : []),
      ],
      ...(spec.env || egress ? { env: { ...spec.env, ...egress?.env } } : {}),
      ...(spec.cwd ? { cwd: spec.cwd } : {}),
      command: spec.command,
    });
    // bwrap tells us on this fd once the payload started: its absence means a set-up failure.
    bwrapArgs.unshift('--json-status-fd', '4');
    // Env values, args and file names never appear in an argv other local users can read (/proc).
    const hidden = hideBwrapArgs(bwrapArgs, BWRAP_ARGS_FD, PAYLOAD_ARGV_FD, egress ? ['--egress-relay', ...egress.relayArgs] : []);
    const launchArgs = buildLaunchArgs({
      cgroupProcsFiles: cgroup.procsFiles,
      rlimits: rlimitsFor(limits),
      uid: lease.uid,
      gid: lease.gid,
      // Egress "none": every socket but Unix ones is refused. Allowlist: inet sockets too, for the relay
      // and the payload's clients; the network namespace has only lo, so they reach nothing but the relay.
      fds: [{ fd: SECCOMP_FD, path: seccompProgramPath(egress ? 'network' : 'no-network') }],
      workspace: prepared.launchArg,
      ...perSandboxMounts(sandboxEtcDir(), dirname(execHelper)),
      syncFd: SYNC_FD,
      syncMemfds: [BWRAP_ARGS_FD, PAYLOAD_ARGV_FD],
      program: requireBwrap(),
      args: hidden.argv,
    });
    const ws = workspace;
    const result = await supervise(spec, limits, cgroup, nativeHelperPath('kiln-launch'), launchArgs, () => {
      ws.writeFiles(spec.files ?? []);
      return encodeSyncData(hidden.sections);
    });
    if (result.verdict !== 'system_error' && result.verdict !== 'canceled') {
      await collectInto(result, workspace, spec.collect ?? ['out/**'], limits.output_bytes);
    }
    result.sandbox_id = sandboxId;
    if (egress) {
      const summary = (result.egress = await egress.close());
      Object.assign(result.resource_usage, {
        egress_connections: summary.connections_allowed,
        egress_denied: summary.connections_denied,
        egress_bytes_sent: summary.bytes_sent,
        egress_bytes_received: summary.bytes_received,
      });
    }
    return result;
  } catch (err) {
    cgroup?.killAll();
    return { ...setupFailure(err instanceof Error ? err.message : String(err)), sandbox_id: sandboxId };
  } finally {
    if (egress) void egress.close().catch(() => undefined);
    deps.trackCleanup(cleanup(cgroup, workspace, lease));
  }
}

/** Removal order matters: no process may remain before the workspace goes, nor files before the uid is reused. */
async function cleanup(cgroup?: SandboxCgroup, workspace?: Workspace, lease?: UidLease): Promise<void> {
  try {
    if (cgroup) await cgroup.remove();
    if (workspace) await workspace.remove();
    lease?.release();
  } catch (err) {
    // A uid whose cgroup or files may outlive the run is never handed out again by this process.
    throw new Error(`sandbox cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Collects the run's files. A walk that a bound stopped (too many entries, too long, too much matching)
 * fails the job as `output_limit` with the reason: the sandbox made more than kiln examines, and saying
 * so beats a silent partial collection. The files collected before the stop are kept.
 */
export async function collectInto(result: RunResult, workspace: Workspace, globs: readonly string[], outputBytes: number): Promise<void> {
  // Collected files are output too: bound them by the larger of output_bytes and 16 MiB per file.
  const outcome = await workspace.collect(globs, { maxFileBytes: Math.max(outputBytes, 16 * 1024 * 1024) });
  result.files = outcome.files;
  if (outcome.stopped !== undefined) {
    if (result.verdict === 'ok') result.verdict = 'output_limit';
    result.error = outcome.stopped;
  }
}

/**
 * A writer for a job's open stdin: each write resolves once the pipe took its bytes, so a caller that
 * awaits it (src/job-stdin) never queues more than one chunk in memory while the program does not read.
 */
export function pipeWriter(stdin: import('node:stream').Writable): StdinWriter {
  return {
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        if (stdin.destroyed || stdin.writableEnded) return reject(new KilnError('CONFLICT', 'the program\'s stdin is closed'));
        if (stdin.write(data)) return resolve();
        const settle = () => {
          stdin.off('drain', settle);
          stdin.off('close', settle);
          resolve();
        };
        stdin.once('drain', settle);
        stdin.once('close', settle);
      }),
    end: () => {
      if (!stdin.destroyed && !stdin.writableEnded) stdin.end();
    },
  };
}

async function supervise(
  spec: OneShotSpec,
  limits: Limits,
  cgroup: SandboxCgroup,
  launchPath: string,
  launchArgs: string[],
  /** Fills the workspace during the handshake; returns what follows "G" on the sync fd. */
  fillWorkspace: () => Buffer,
): Promise<RunResult> {
  const started = performance.now();
  // Through kiln-spawner by default (Node does not fork itself), child_process.spawn with KILN_SPAWNER=0.
  const child = await launchProcess({
    path: launchPath,
    args: launchArgs,
    env: {},
    stdio: ['pipe', 'pipe', 'pipe', spec.reportsCompileStatus ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve) => {
    const [stdin, out, err] = child.stdio as [
      import('node:stream').Duplex,
      import('node:stream').Duplex,
      import('node:stream').Duplex,
    ];
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let keptBytes = 0;
    let seenBytes = 0;
    let outputExceeded = false;
    let wallTimeExceeded = false;
    let cpuTimeExceeded = false;
    let canceled = false;
    const statusChunks: Buffer[] = [];
    let statusBytes = 0;
    let bwrapStatus = '';
    let spawnError: string | undefined;

    const killAll = () => {
      cgroup.killAll();
      child.kill('SIGKILL');
    };

    const onData = (into: Buffer[], callback?: (chunk: Buffer) => void) => (chunk: Buffer) => {
      seenBytes += chunk.length;
      const room = limits.output_bytes - keptBytes;
      const kept = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(0, room));
      if (kept.length > 0) {
        into.push(kept);
        keptBytes += kept.length;
        callback?.(kept);
      }
      if (seenBytes > limits.output_bytes && !outputExceeded) {
        outputExceeded = true;
        killAll();
      }
    };
    out.on('data', onData(stdout, spec.onStdout));
    err.on('data', onData(stderr, spec.onStderr));
    const statusStream = child.stdio[3];
    statusStream?.on('data', (chunk: Buffer) => {
      // Read to the end (the script never blocks on it), keep what a report can hold.
      if (statusBytes < COMPILE_REPORT_MAX) statusChunks.push(chunk.subarray(0, COMPILE_REPORT_MAX - statusBytes));
      statusBytes += chunk.length;
    });
    child.stdio[4]?.on('data', (chunk: Buffer) => {
      if (bwrapStatus.length < 4096) bwrapStatus += chunk.toString('utf8');
    });

    // The handshake: kiln-launch says "R" once the workspace is mounted; we write the files, answer "G".
    const sync = child.stdio[SYNC_FD];
    sync?.once('data', () => {
      try {
        sync.end(fillWorkspace());
      } catch (err) {
        spawnError = err instanceof Error ? err.message : String(err);
        killAll();
      }
    });
    sync?.on('error', () => {
      // kiln-launch died before the handshake: its exit status tells why
    });

    stdin.on('error', () => {
      // the payload may exit without reading its stdin (EPIPE): not an error of the run
    });
    if (spec.openStdin) {
      if (spec.stdin !== undefined && spec.stdin.length > 0) stdin.write(spec.stdin);
      spec.openStdin(pipeWriter(stdin));
    } else if (spec.stdin !== undefined && spec.stdin.length > 0) stdin.end(spec.stdin);
    else stdin.end();

    const wallTimer = setTimeout(() => {
      wallTimeExceeded = true;
      killAll();
    }, limits.wall_time_ms);

    // The cgroup's CPU time covers every process and thread; RLIMIT_CPU only whole seconds per process.
    let cpuTimer: NodeJS.Timeout | undefined;
    const watchCpu = (delayMs: number) => {
      cpuTimer = setTimeout(() => {
        let usedMs = 0;
        try {
          usedMs = cgroup.usage().cpuTimeMs;
        } catch {
          return;
        }
        if (usedMs >= limits.cpu_time_ms) {
          cpuTimeExceeded = true;
          killAll();
        } else {
          watchCpu(Math.max(CPU_WATCH_MIN_MS, limits.cpu_time_ms - usedMs));
        }
      }, delayMs);
    };
    watchCpu(Math.max(CPU_WATCH_MIN_MS, limits.cpu_time_ms));

    const onAbort = () => {
      canceled = true;
      killAll();
    };
    spec.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err) => {
      spawnError = `could not start kiln-launch: ${err.message}`;
    });
    child.on('close', (code, signal) => {
      const wallTimeMs = performance.now() - started;
      clearTimeout(wallTimer);
      if (cpuTimer) clearTimeout(cpuTimer);
      spec.signal?.removeEventListener('abort', onAbort);
      // No process may outlive the payload (daemons, setsid orphans): the pid namespace took them with
      // bwrap's init; the cgroup kill catches anything in between.
      cgroup.killAll();
      const usage = safeUsage(cgroup);
      const stderrBuf = Buffer.concat(stderr);
      const payloadStarted = bwrapStatus.includes('"child-pid"');
      let setupError = spawnError;
      if (!payloadStarted && !setupError && !canceled && !wallTimeExceeded && !outputExceeded) {
        setupError = `the sandbox did not start (exit ${code ?? signal}): ${stderrBuf.toString('utf8').trim().slice(0, 500)}`;
      }
      if (!payloadStarted && setupError === undefined && (wallTimeExceeded || outputExceeded)) {
        setupError = 'the sandbox did not start before it was killed';
      }
      // kiln-exec (like bubblewrap) reports a payload it could not exec (missing program) as exit 1 with this message.
      if (setupError === undefined && code === 1 && /^(kiln-exec|bwrap): execvp /.test(stderrBuf.toString('utf8', 0, 200))) {
        setupError = stderrBuf.toString('utf8').trim().slice(0, 500);
      }
      const exit = decodeExit(code, signal);
      const cpuTimeExceededAfter = cpuTimeExceeded || usage.cpuTimeMs > limits.cpu_time_ms;
      const compile = spec.reportsCompileStatus ? parseCompileReport(Buffer.concat(statusChunks), spec.env?.KILN_COMPILE_TIMEOUT_S) : undefined;
      const verdict = decideVerdict({
        canceled,
        setupError,
        outputExceeded,
        oomKills: usage.oomKills,
        wallTimeExceeded,
        cpuTimeExceeded: cpuTimeExceededAfter,
        compileFailed: compile !== undefined && compile.verdict !== 'ok',
        exit,
      });
      // The run's own usage: the sandbox's, less what the compile step took.
      const compileCpuMs = compile?.resource_usage.cpu_time_ms ?? 0;
      const compileWallMs = compile?.resource_usage.wall_time_ms ?? 0;
      const failedCompile = compile !== undefined && compile.verdict !== 'ok';
      resolve({
        verdict,
        exit_status: exit,
        ...(compile ? { compile } : {}),
        resource_usage: {
          cpu_time_ms: round3(Math.max(0, usage.cpuTimeMs - compileCpuMs)),
          wall_time_ms: round3(Math.max(0, wallTimeMs - compileWallMs)),
          memory_peak_bytes: usage.memoryPeakBytes,
          ...(usage.pidsPeak !== undefined ? { pids_peak: usage.pidsPeak } : {}),
          output_bytes: seenBytes,
        },
        stdout: Buffer.concat(stdout),
        // No run after a failed compile: its stderr is the compiler's messages, where clients look.
        stderr: failedCompile ? Buffer.from(`${compile.stdout}${compile.stderr}`) : stderrBuf,
        output_truncated: outputExceeded,
        files: [],
        ...(setupError !== undefined ? { error: setupError } : {}),
      });
    });
  });
}

/**
 * Reads the compile report a compiled language's script wrote on fd 3 (languages/catalog.ts): undefined
 * when there is none (the sandbox never got that far). A killed compile that used its whole timeout is
 * `time_limit`, as is one stopped by its CPU limit (SIGXCPU).
 */
export function parseCompileReport(report: Buffer, timeoutSeconds: string | undefined): CompileResult | undefined {
  const headerEnd = report.indexOf(0x0a);
  const header = /^compile:(ok|failed) (\d+) (\d+) (\d+) (\d+)$/.exec(report.subarray(0, Math.max(0, headerEnd)).toString('latin1'));
  if (!header) return undefined;
  const [, state, rcText, wallUsText, outText, errText] = header;
  const rc = Number(rcText);
  const wallMs = Number(wallUsText) / 1000;
  // `times`: the shell's own line, then its children's (the compile step's) user and system time.
  let at = headerEnd + 1;
  const lines: string[] = [];
  for (let i = 0; i < 2 && at < report.length; i += 1) {
    const end = report.indexOf(0x0a, at);
    if (end < 0) break;
    lines.push(report.subarray(at, end).toString('latin1'));
    at = end + 1;
  }
  const cpuMs = [...(lines[1] ?? '').matchAll(/(\d+)m([\d.]+)s/g)].reduce((ms, m) => ms + (Number(m[1]) * 60 + Number(m[2])) * 1000, 0);
  const outBytes = Math.min(Number(outText), COMPILE_REPORT_STREAM_BYTES);
  const errBytes = Math.min(Number(errText), COMPILE_REPORT_STREAM_BYTES);
  const stdout = report.subarray(at, at + outBytes).toString('utf8');
  const stderr = report.subarray(at + outBytes, at + outBytes + errBytes).toString('utf8');
  const signalName = rc > 128 ? signalNameOf(rc - 128) : null;
  const timedOut =
    (signalName === 'SIGKILL' && timeoutSeconds !== undefined && wallMs >= Number(timeoutSeconds) * 1000 * 0.98) || signalName === 'SIGXCPU';
  return {
    verdict: state === 'ok' ? 'ok' : timedOut ? 'time_limit' : 'compile_error',
    exit_status: signalName ? { code: null, signal: signalName } : { code: rc, signal: null },
    resource_usage: { cpu_time_ms: round3(cpuMs), wall_time_ms: round3(wallMs) },
    stdout,
    stderr,
    output_truncated: Number(outText) > outBytes || Number(errText) > errBytes,
  };
}

function signalNameOf(n: number): string | null {
  return Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0] ?? null;
}

function safeUsage(cgroup: SandboxCgroup) {
  try {
    return cgroup.usage();
  } catch {
    return { cpuTimeMs: 0, memoryPeakBytes: 0, oomKills: 0, pidsLimitHits: 0 };
  }
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function emptyResult(): Omit<RunResult, 'verdict'> {
  return {
    exit_status: { code: null, signal: null },
    resource_usage: { cpu_time_ms: 0, wall_time_ms: 0, memory_peak_bytes: 0 },
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    output_truncated: false,
    files: [],
  };
}

/** The result of a run that never ran: set-up failed, or the node lost it. */
export function setupFailure(error: string): RunResult {
  return { verdict: 'system_error', ...emptyResult(), error };
}

function cancelledBeforeStart(): RunResult {
  return { verdict: 'canceled', ...emptyResult() };
}
