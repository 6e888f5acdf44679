import type { Limits } from '@kiln/core';

/**
 * kiln-launch's command line (native/launch/kiln-launch.c): join the cgroups, set rlimits, open the
 * seccomp program on a fixed fd, drop to the pool uid, then exec the program (bwrap).
 */
export interface LaunchOptions {
  cgroupProcsFiles: readonly string[];
  rlimits: RlimitSet;
  uid: number;
  gid: number;
  /** `DIR:SIZE:INODES`: kiln-launch mounts the workspace tmpfs itself (Workspace.prepare). */
  workspace?: string;
  /** Read-only overlays of host folders kiln-launch mounts at `<workspace>/<name>` (per-sandbox inodes). */
  overlays?: readonly { lower: string; name: string }[];
  /** Name of the /dev of the sandbox's own kiln-launch makes at `<workspace>/<name>`. */
  devices?: string;
  /** A socket fd for the ready/go handshake while the runner fills the workspace. */
  syncFd?: number;
  /** fds kiln-launch fills, in order, with the sections the runner sends after "G" (encodeSyncData). */
  syncMemfds?: readonly number[];
  /** Files opened read-only on fixed fds in the launched program (the seccomp program). */
  fds?: readonly { fd: number; path: string }[];
  program: string;
  args: readonly string[];
}

/** Soft:hard pairs; `inf` for unlimited. */
export interface RlimitSet {
  cpu?: [number, number];
  fsize?: [number, number];
  nofile?: [number, number];
  core?: [number, number];
  nproc?: [number, number];
}

/** The fd bwrap reads the seccomp program from. */
export const SECCOMP_FD = 10;
/** The memfd bwrap reads its options from (`bwrap --args`). */
export const BWRAP_ARGS_FD = 11;
/** The memfd kiln-exec reads the payload's argv from. */
export const PAYLOAD_ARGV_FD = 12;

/**
 * What kiln-launch mounts under the workspace root for every sandbox, each with inodes (so file locks)
 * of its own: overlays of /usr, of the /etc copy and of the helpers' folder, and a /dev. The names match
 * bwrap-args.ts ownSystemFolders; the helpers are bound from `<root>/kiln/<name>`.
 */
export function perSandboxMounts(etcDir: string, helpersDir: string): Pick<LaunchOptions, 'overlays' | 'devices'> {
  return {
    overlays: [
      { lower: '/usr', name: 'usr' },
      { lower: etcDir, name: 'etc' },
      { lower: helpersDir, name: 'kiln' },
    ],
    devices: 'dev',
  };
}

/** What the runner writes after "G" on the sync fd: each section as a little-endian u32 length and its bytes. */
export function encodeSyncData(sections: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from('G')];
  for (const section of sections) {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(section.length, 0);
    parts.push(length, section);
  }
  return Buffer.concat(parts);
}

/**
 * rlimits for a one-shot sandbox. RLIMIT_CPU counts whole seconds per process: it is the kernel's
 * backstop (SIGXCPU), the runner's cgroup watchdog enforces the millisecond limit across all processes.
 * RLIMIT_NPROC backs up the pids cgroup (the uid is the sandbox's alone, so it counts only its tasks).
 */
export function rlimitsFor(limits: Limits): RlimitSet {
  const cpuSeconds = Math.max(1, Math.ceil(limits.cpu_time_ms / 1000));
  const openFiles = limits.open_files ?? 256;
  return {
    cpu: [cpuSeconds, cpuSeconds + 1],
    fsize: [limits.file_size_bytes, limits.file_size_bytes],
    nofile: [openFiles, openFiles],
    core: [0, 0],
    nproc: [limits.pids + 16, limits.pids + 16],
  };
}

export function buildLaunchArgs(o: LaunchOptions): string[] {
  const args: string[] = [];
  for (const f of o.cgroupProcsFiles) args.push('--cgroup', f);
  for (const [name, pair] of Object.entries(o.rlimits) as [string, [number, number] | undefined][]) {
    if (pair) args.push('--rlimit', `${name}=${pair[0]}:${pair[1]}`);
  }
  for (const f of o.fds ?? []) args.push('--fd', `${f.fd}=${f.path}`);
  if (o.workspace) args.push('--workspace', o.workspace);
  for (const ov of o.overlays ?? []) args.push('--overlay', `${ov.lower}=${ov.name}`);
  if (o.devices) args.push('--devices', o.devices);
  if (o.syncFd !== undefined) args.push('--sync-fd', String(o.syncFd));
  for (const fd of o.syncMemfds ?? []) args.push('--sync-memfd', String(fd));
  args.push('--uid', String(o.uid), '--gid', String(o.gid), '--', o.program, ...o.args);
  return args;
}
