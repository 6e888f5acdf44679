import { chownSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { KilnError, limitsSchema, newId, parseOrThrow } from '@kiln/core';
import type { PersistentDeps } from '../bubblewrap-driver.js';
import { buildBwrapArgs, ownSystemFolders, hideBwrapArgs } from '../bwrap-args.js';
import type { SandboxCgroup } from '../cgroups/index.js';
import type { PersistentSpec } from '../driver.js';
import { BWRAP_ARGS_FD, buildLaunchArgs, encodeSyncData, rlimitsFor, perSandboxMounts, SECCOMP_FD } from '../launch-args.js';
import { nativeHelperPath, requireBwrap } from '../native-paths.js';
import { launchProcess, type LaunchedProcess } from '../process-launcher.js';
import { sandboxEtcDir } from '../sandbox-etc.js';
import { seccompProgramPath } from '../seccomp.js';
import type { UidLease } from '../uid-pool.js';
import { refuseUnsafeFilePaths, Workspace } from '../workspace.js';
import { PersistentSandbox } from './persistent-sandbox.js';
import { EGRESS_DIR_INSIDE, type EgressLease } from '../../egress/egress-proxy.js';

/** Where the control folder is bound inside, and the init's socket in it. */
export const CONTROL_DIR_INSIDE = '/run/kiln';
export const INIT_SOCKET_INSIDE = `${CONTROL_DIR_INSIDE}/init.sock`;
/** Where the (static) init binary is bound inside; outside /workspace so the payload cannot replace it. */
const INIT_BINARY_INSIDE = '/kiln-init';
/** stdio index of the kiln-launch handshake socket. */
const SYNC_FD = 3;
/** The outer bwrap and the init live in the sandbox's pids cgroup too. */
const OVERHEAD_PIDS = 2;
/** @default how long the sandbox may take to answer before start() gives up */
const DEFAULT_READY_TIMEOUT_MS = 10_000;

export interface StartPersistentOptions {
  /** @default 10 000 */
  readyTimeoutMs?: number;
}

/**
 * Starts a persistent sandbox: a fresh cgroup, a pool uid, a size-capped workspace, a control folder,
 * and bubblewrap with the same isolation as one-shot runs, running kiln-init as PID 1 (`--as-pid-1`:
 * no bwrap reaper in between, so our init is the one that reaps and the pid namespace ends with it).
 * Resolves once the init's socket listens. Every resource taken is given back if a step fails.
 */
export async function startPersistentSandbox(
  spec: PersistentSpec,
  deps: PersistentDeps,
  options: StartPersistentOptions = {},
): Promise<PersistentSandbox> {
  const limits = parseOrThrow(limitsSchema, spec.limits, 'limits');
  // Bad input is refused before any resource is taken (the files are written during the handshake).
  refuseUnsafeFilePaths(spec.files ?? []);
  const id = newId('sandbox');
  let lease: UidLease | undefined;
  let workspace: Workspace | undefined;
  let cgroup: SandboxCgroup | undefined;
  let child: LaunchedProcess | undefined;
  let egress: EgressLease | undefined;
  try {
    lease = deps.uids.acquire();
    // Allowlist egress: a proxy socket of this sandbox's own, reached from inside through kiln-init's relay.
    if (spec.network?.egress === 'allowlist') {
      egress = await deps.egress().open({ sandbox_id: id, ...spec.network.owner, allow: spec.network.allow ?? [], uid: lease.uid, gid: lease.gid });
    }
    // kiln-launch mounts the workspace and its overlays, then waits on the sync fd while we fill it.
    const prepared = Workspace.prepare({ uid: lease.uid, gid: lease.gid, diskBytes: limits.disk_bytes, id });
    workspace = prepared.workspace;
    const ws = workspace;
    const uid = lease.uid;
    const gid = lease.gid;
    // The control folder and the host-side port sockets live on the workspace's tmpfs, outside the folders
    // bound inside: the sandbox reaches only `ctl` (at /run/kiln), never `ports`, and one unmount removes both.
    const controlDir = `${workspace.root}/ctl`;
    const portsDir = `${workspace.root}/ports`;
    const fillWorkspace = () => {
      ws.writeFiles(spec.files ?? []);
      mkdirSync(controlDir, { mode: 0o700 });
      chownSync(controlDir, uid, gid);
      mkdirSync(portsDir, { mode: 0o700 });
    };
    const initBinary = nativeHelperPath('kiln-init');
    // The egress relay is one more process of ours in the sandbox.
    const overheadPids = OVERHEAD_PIDS + (egress ? 1 : 0);
    cgroup = deps.cgroups.create(id, { memoryBytes: limits.memory_bytes, pids: limits.pids + overheadPids });

    const cpuSeconds = Math.max(1, Math.ceil(limits.cpu_time_ms / 1000));
    const bwrapArgs = buildBwrapArgs({
      workspaceDir: workspace.workDir,
      tmpDir: workspace.tmpDir,
      shmDir: workspace.shmDir,
      seccompFd: SECCOMP_FD,
      cgroupBinds: cgroup.binds,
      // The sandbox's own /usr, /etc, /dev and helper (kiln-launch mounts them): no lock is shared with another.
      ...ownSystemFolders(workspace.root),
      extraBinds: [
        { source: controlDir, dest: CONTROL_DIR_INSIDE, readOnly: false },
        { source: `${workspace.root}/kiln/kiln-init`, dest: INIT_BINARY_INSIDE },
        ...(egress ? [{ source: egress.hostDir, dest: EGRESS_DIR_INSIDE }] : []),
      ],
      ...(spec.env || egress ? { env: { ...spec.env, ...egress?.env } } : {}),
      command: [
        INIT_BINARY_INSIDE,
        '--cpu-seconds',
        String(cpuSeconds),
        ...(egress ? ['--egress-relay', ...egress.relayArgs] : []),
        INIT_SOCKET_INSIDE,
      ],
    });
    // Our init is PID 1 itself (bwrap would otherwise put its own reaper there).
    bwrapArgs.splice(bwrapArgs.indexOf('--'), 0, '--as-pid-1');
    // The options (env values included) go on a memfd; kiln-init's fixed command line carries no request.
    const hidden = hideBwrapArgs(bwrapArgs, BWRAP_ARGS_FD);
    // RLIMIT_CPU is per process and the init lives long: the init sets it per command instead.
    const { cpu: _perCommand, ...rlimits } = rlimitsFor(limits);
    const launchArgs = buildLaunchArgs({
      cgroupProcsFiles: cgroup.procsFiles,
      rlimits,
      uid: lease.uid,
      gid: lease.gid,
      // Loopback sockets are allowed unless refused: services listen on 127.0.0.1 in a netns with only `lo`.
      fds: [{ fd: SECCOMP_FD, path: seccompProgramPath(spec.loopback === false ? 'no-network' : 'network') }],
      workspace: prepared.launchArg,
      ...perSandboxMounts(sandboxEtcDir(), dirname(initBinary)),
      syncFd: SYNC_FD,
      syncMemfds: [BWRAP_ARGS_FD],
      program: requireBwrap(),
      args: hidden.argv,
    });
    // Through kiln-spawner like one-shot runs (child_process.spawn forks all of Node; KILN_SPAWNER=0 falls back to it).
    child = await launchProcess({
      path: nativeHelperPath('kiln-launch'),
      args: launchArgs,
      env: {},
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const launched = child;
    const exited = new Promise<string>((resolve) => launched.once('close', (code, signal) => resolve(String(code ?? signal))));
    const stderrTail = collectTail(child);
    const sync = child.stdio[SYNC_FD]!;
    sync.on('error', () => {
      // kiln-launch died before the handshake: waitReady reports its exit and stderr
    });
    sync.once('data', () => {
      try {
        fillWorkspace();
        sync.end(encodeSyncData(hidden.sections));
      } catch (err) {
        stderrTail.note(`could not fill the workspace: ${(err as Error).message}`);
        launched.kill('SIGKILL');
      }
    });
    await waitReady(child, exited, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS, stderrTail);
    return new PersistentSandbox({
      id,
      limits,
      baseEnv: { ...spec.env, ...egress?.env },
      child,
      exited,
      cgroup,
      workspace,
      lease,
      controlSocket: `${controlDir}/init.sock`,
      portsDir,
      stderrTail,
      trackCleanup: deps.trackCleanup,
      ...(egress ? { egress } : {}),
    });
  } catch (err) {
    cgroup?.killAll();
    child?.kill('SIGKILL');
    if (egress) void egress.close().catch(() => undefined);
    deps.trackCleanup(releaseAll(cgroup, workspace, lease));
    if (err instanceof KilnError) throw err;
    throw new KilnError('INTERNAL', `the persistent sandbox did not start: ${(err as Error).message}`);
  }
}

/** Removal order matters: no process before the workspace goes, no file before the uid is reused. */
export async function releaseAll(cgroup?: SandboxCgroup, workspace?: Workspace, lease?: UidLease): Promise<void> {
  if (cgroup) await cgroup.remove();
  if (workspace) await workspace.remove();
  lease?.release();
}

/** Keeps the last few KiB of the launcher's and bwrap's stderr, for a clear error when the sandbox dies. */
function collectTail(child: LaunchedProcess): (() => string) & { note: (line: string) => void } {
  let tail = '';
  const add = (text: string) => (tail = (tail + text).slice(-4096));
  child.stdio[2]?.on('data', (chunk: Buffer) => add(chunk.toString('utf8')));
  return Object.assign(() => tail.trim(), { note: (line: string) => add(`${line}\n`) });
}

/** kiln-init writes "ready\n" once its socket listens (its stdout is the launcher's); the host pid must be known too. */
function waitReady(child: LaunchedProcess, exited: Promise<string>, timeoutMs: number, stderrTail: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    let settled = false;
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const stdout = child.stdio[1];
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      if (!seen.includes('ready\n')) return;
      if (child.pid !== undefined) done();
      else child.once('spawn', () => done());
    };
    const onError = (err: Error) => done(err);
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stdout?.off('data', onData);
      child.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    stdout?.on('data', onData);
    void exited.then((how) => done(new Error(`it exited (${how}) before it was ready: ${stderrTail() || 'no message'}`)));
    child.on('error', onError);
  });
}
