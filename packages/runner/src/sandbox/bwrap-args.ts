import { existsSync } from 'node:fs';

/**
 * The bubblewrap command line for one sandbox (ARCHITECTURE.md §8, SANDBOX-NOTES.md): every namespace,
 * nested user namespaces refused, no capabilities, a cleared environment, the host's /usr read-only with
 * the merged-/usr symlinks, only the /etc files runtimes need (both through the sandbox's own overlays,
 * see kiln-launch --overlay), a fresh /proc and a /dev of its own, the sandbox's own
 * tmpfs folders at /workspace, /tmp and /dev/shm, its cgroup folders read-only at /sys/fs/cgroup (so Node
 * and Java size their heaps from the sandbox's limit), and the seccomp program on an inherited fd.
 */

/** A host folder or file bound into the sandbox. */
export interface BindMount {
  source: string;
  dest: string;
  /** @default true */
  readOnly?: boolean;
}

export interface BwrapOptions {
  /**
   * Host folder bound read-only at /usr: the sandbox's own overlay of the host's /usr (kiln-launch
   * `--overlay`), so file locks are not shared between sandboxes. @default /usr
   */
  usrDir?: string;
  /**
   * Host folder bound at /dev (kiln-launch `--devices`: device nodes of the sandbox's own) instead of
   * bwrap's `--dev`, which binds the host's /dev/null and friends (inodes, and so locks, every sandbox
   * shares). @default bwrap's --dev
   */
  devDir?: string;
  /** Host folder bound read-write at /workspace. */
  workspaceDir: string;
  /** Host folder bound read-write at /tmp (size-capped by the workspace's tmpfs). */
  tmpDir: string;
  /** Host folder bound read-write at /dev/shm. */
  shmDir: string;
  /** The inherited fd holding the seccomp BPF program (kiln-launch --fd N=PATH). */
  seccompFd: number;
  /** Cgroup folders bound read-only (from SandboxCgroup.binds). */
  cgroupBinds?: readonly { source: string; dest: string }[];
  /** Extra binds, e.g. a persistent sandbox's control folder. */
  extraBinds?: readonly BindMount[];
  /** Environment of the payload; added to the minimal base (PATH, HOME, LANG, TMPDIR). */
  env?: Record<string, string>;
  /** Working directory inside. @default /workspace */
  cwd?: string;
  /** uid and gid the payload sees inside its user namespace. @default 1000 */
  insideUid?: number;
  /** @default 'kiln' */
  hostname?: string;
  /** A host folder bound read-only as the whole /etc: the sandbox's overlay of sandboxEtcDir(). */
  etcDir: string;
  /** The payload argv (resolved inside the sandbox's PATH, or an absolute path inside). */
  command: readonly string[];
}

/** Base environment inside every sandbox; nothing of the runner's environment leaks in. */
export const SANDBOX_BASE_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/workspace',
  LANG: 'C.UTF-8',
  TMPDIR: '/tmp',
  USER: 'sandbox',
};

/** Top-level merged-/usr symlinks (Debian 12: /bin → usr/bin and so on). */
const USR_SYMLINKS: [string, string][] = [
  ['usr/bin', '/bin'],
  ['usr/sbin', '/sbin'],
  ['usr/lib', '/lib'],
  ['usr/lib64', '/lib64'],
  ['usr/lib32', '/lib32'],
  ['usr/libx32', '/libx32'],
];

let presentSymlinks: [string, string][] | undefined;
function usrSymlinks(): [string, string][] {
  presentSymlinks ??= USR_SYMLINKS.filter(([target]) => existsSync(`/${target}`));
  return presentSymlinks;
}

/** Environment variable names must be plain identifiers; values must not contain NUL. */
function checkEnv(env: Record<string, string>): void {
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad environment variable name ${JSON.stringify(k)}`);
    if (v.includes('\0')) throw new Error(`environment variable ${k} contains NUL`);
  }
}

/** Builds bwrap's argv (without the bwrap path itself). */
export function buildBwrapArgs(o: BwrapOptions): string[] {
  if (o.command.length === 0) throw new Error('empty command');
  const insideUid = String(o.insideUid ?? 1000);
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--clearenv',
    '--uid',
    insideUid,
    '--gid',
    insideUid,
    '--hostname',
    o.hostname ?? 'kiln',
    '--ro-bind',
    o.usrDir ?? '/usr',
    '/usr',
  ];
  for (const [target, link] of usrSymlinks()) args.push('--symlink', target, link);
  args.push('--ro-bind', o.etcDir, '/etc');
  args.push('--proc', '/proc');
  if (o.devDir) args.push('--dev-bind', o.devDir, '/dev');
  else args.push('--dev', '/dev');
  args.push('--bind', o.workspaceDir, '/workspace', '--bind', o.tmpDir, '/tmp', '--bind', o.shmDir, '/dev/shm');
  for (const b of o.cgroupBinds ?? []) args.push('--ro-bind', b.source, b.dest);
  for (const b of o.extraBinds ?? []) args.push(b.readOnly === false ? '--bind' : '--ro-bind', b.source, b.dest);
  // The root tmpfs bwrap builds is read-only once set up: the payload writes only where we allow.
  args.push('--remount-ro', '/');
  const env = { ...SANDBOX_BASE_ENV, ...(o.env ?? {}) };
  checkEnv(env);
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  args.push('--chdir', o.cwd ?? '/workspace');
  args.push('--seccomp', String(o.seccompFd));
  args.push('--', ...o.command);
  return args;
}

/**
 * The folders kiln-launch mounts under a workspace's root for one sandbox (launch-args.ts
 * perSandboxMounts): its overlays of /usr and of the /etc copy, and its /dev.
 */
export function ownSystemFolders(workspaceRoot: string): Required<Pick<BwrapOptions, 'usrDir' | 'etcDir' | 'devDir'>> {
  return { usrDir: `${workspaceRoot}/usr`, etcDir: `${workspaceRoot}/etc`, devDir: `${workspaceRoot}/dev` };
}

/** Where kiln-exec is bound inside a one-shot sandbox (outside /workspace: the payload cannot replace it). */
export const EXEC_HELPER_INSIDE = '/kiln-exec';

/** bwrap's argv once its options, and maybe its command, travel on inherited fds instead. */
export interface HiddenBwrapArgs {
  /** What bwrap's argv (and so /proc/<pid>/cmdline, for every local user) still shows. */
  argv: string[];
  /**
   * The sections kiln-launch turns into memfds (`--sync-memfd`), in the order of the fds asked for:
   * the NUL-separated options for `bwrap --args`, then the payload's argv for kiln-exec if hidden.
   */
  sections: Buffer[];
}

/** NUL-terminated strings; a NUL inside one would silently split it in two, so it is refused. */
function nulJoined(strings: readonly string[]): Buffer {
  if (strings.some((s) => s.includes('\0'))) throw new Error('a sandbox argument or command contains NUL');
  return Buffer.from(strings.map((s) => `${s}\0`).join(''), 'utf8');
}

/**
 * Moves everything of a request out of bwrap's argv, which any local user reads in /proc/<pid>/cmdline:
 * the options (binds, `--setenv` values) go to `bwrap --args optionsFd`, and with `commandFd` the
 * payload's command line too (bwrap wants its command in argv, so it runs kiln-exec, which reads the
 * real one from that fd and execs it). Without `commandFd` the command stays visible: only for fixed
 * commands that carry nothing of a request (a persistent sandbox's kiln-init).
 */
export function hideBwrapArgs(
  args: readonly string[],
  optionsFd: number,
  commandFd?: number,
  /** kiln-exec's own options before the fd (its egress relay), fixed strings that carry nothing of a request. */
  helperOptions: readonly string[] = [],
): HiddenBwrapArgs {
  const split = args.indexOf('--');
  if (split < 0) throw new Error('bwrap arguments without a command');
  const options = args.slice(0, split);
  const command = args.slice(split + 1);
  const sections = [nulJoined(options)];
  if (commandFd === undefined) return { argv: ['--args', String(optionsFd), '--', ...command], sections };
  sections.push(nulJoined(command));
  return { argv: ['--args', String(optionsFd), '--', EXEC_HELPER_INSIDE, ...helperOptions, String(commandFd)], sections };
}
