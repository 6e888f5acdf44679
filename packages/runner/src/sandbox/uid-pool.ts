import { closeSync, constants, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { runtimeSubdir } from './runtime-dir.js';

/**
 * Unprivileged host uids for sandboxes: one per live sandbox, never 0, never shared, safe across
 * processes (several runners and test workers on one host). Each uid is claimed by creating
 * `<runtime>/uids/<uid>.lock` with O_EXCL; the file holds the owner's pid and its start time, so a lock
 * left by a dead process is reclaimed. Reclaiming goes through a second O_EXCL file per uid, so two
 * processes never both reclaim the same stale lock (which could let one delete the other's fresh lock).
 */

/** @default first uid 2_000_000, 65_536 uids; override with KILN_UID_BASE / KILN_UID_COUNT. */
export interface UidPoolOptions {
  firstUid?: number;
  count?: number;
  /** Folder holding the lock files. @default `<runtime>/uids` */
  lockDir?: string;
}

export interface UidLease {
  readonly uid: number;
  readonly gid: number;
  /** Gives the uid back; call only after every process of the sandbox is gone. Idempotent. */
  release(): void;
}

function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); the command name (field 2) may contain spaces, so split after its ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

const ownStamp = `${process.pid} ${processStartTime(process.pid) ?? '0'}\n`;

function ownerIsAlive(lockFile: string): boolean {
  let content: string;
  try {
    content = readFileSync(lockFile, 'utf8');
  } catch {
    return false;
  }
  const [pid, start] = content.trim().split(' ');
  // A lock being written right now may be empty for a moment: treat it as alive.
  if (!pid) return true;
  const actual = processStartTime(Number(pid));
  return actual !== undefined && (start === undefined || start === actual);
}

/**
 * Kills every process that still runs as one of `uids`. Called only for pool uids whose locks name a dead
 * owner,
 * under the reclaim guard: the lock is exclusive, so no live runner holds a sandbox of that uid, and what
 * runs as it is a sandbox its runner left behind (killed while the sandbox was being built, before it
 * could take it down). Reclaimed without this, the uid would be handed to a new sandbox while the old
 * one still ran as it.
 */
function killOrphansOf(orphaned: ReadonlySet<number>): void {
  if (orphaned.size === 0) return;
  // One pass over /proc for every uid reclaimed at once: a crashed runner leaves a lock per sandbox.
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${name}/status`, 'utf8');
    } catch {
      continue; // gone already
    }
    // "Uid:\treal\teffective\tsaved\tfs": any of them being the pool uid makes it the sandbox's.
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    if (!uids.some((uid) => orphaned.has(uid)) || !inSandboxCgroup(name)) continue;
    try {
      process.kill(Number(name), 'SIGKILL');
    } catch {
      // exited in between
    }
  }
}

/**
 * Whether the process is in a sandbox's own cgroup (`…/sbx_<id>`): a second proof, beside its uid, that it
 * is a sandbox's, so that a pool range set over real users' uids could never kill their processes.
 */
function inSandboxCgroup(pid: string): boolean {
  try {
    return /\/sbx_[0-9a-z]+$/m.test(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  } catch {
    return false;
  }
}

/** The uid a lock file is for (`<uid>.lock`). */
function uidOfLock(lockFile: string): number {
  return Number(/(\d+)\.lock$/.exec(lockFile)?.[1]);
}

function tryCreate(path: string): boolean {
  try {
    const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, ownStamp);
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

export class UidPool {
  readonly firstUid: number;
  readonly count: number;
  private readonly lockDir: string | undefined;
  private cursor: number;

  constructor(options: UidPoolOptions = {}) {
    this.firstUid = options.firstUid ?? Number(process.env.KILN_UID_BASE ?? 2_000_000);
    this.count = options.count ?? Number(process.env.KILN_UID_COUNT ?? 65_536);
    if (!Number.isInteger(this.firstUid) || this.firstUid < 1000 || this.firstUid + this.count > 0xfffffffe) {
      throw new Error(`uid pool range ${this.firstUid}+${this.count} is not an unprivileged range`);
    }
    this.lockDir = options.lockDir;
    // Start each process somewhere different so concurrent processes rarely contend for the same uid.
    this.cursor = (process.pid * 7919) % this.count;
  }

  private dir(): string {
    return this.lockDir ?? runtimeSubdir('uids', 0o700);
  }

  /** Claims a free uid; throws when every uid of the pool is taken by a live owner. */
  acquire(): UidLease {
    const dir = this.dir();
    for (let tried = 0; tried < this.count; tried++) {
      const uid = this.firstUid + ((this.cursor + tried) % this.count);
      const lockFile = `${dir}/${uid}.lock`;
      if (tryCreate(lockFile) || this.reclaim(lockFile)) {
        this.cursor = (this.cursor + tried + 1) % this.count;
        let released = false;
        return {
          uid,
          gid: uid,
          release: () => {
            if (released) return;
            released = true;
            tryUnlink(lockFile);
          },
        };
      }
    }
    throw new Error(`no free sandbox uid in ${this.firstUid}..${this.firstUid + this.count - 1}`);
  }

  /** Takes over a lock whose owner is dead; false when it is alive or another process is reclaiming it. */
  private reclaim(lockFile: string): boolean {
    if (ownerIsAlive(lockFile)) return false;
    const guard = `${lockFile}.reclaim`;
    if (!tryCreate(guard)) {
      // Someone else is reclaiming; if that someone died mid-way, clear its guard for the next try.
      if (!ownerIsAlive(guard)) tryUnlink(guard);
      return false;
    }
    try {
      if (ownerIsAlive(lockFile)) return false;
      killOrphansOf(new Set([uidOfLock(lockFile)]));
      tryUnlink(lockFile);
      return tryCreate(lockFile);
    } finally {
      tryUnlink(guard);
    }
  }
}

/**
 * Deletes the locks of dead owners (a crashed or killed runner), with the same guard as `acquire()` so
 * it never races a process reclaiming the same uid. Returns the uids freed.
 */
export function removeStaleUidLocks(lockDir?: string): number[] {
  const dir = lockDir ?? runtimeSubdir('uids', 0o700);
  // Every stale lock is taken under its guard first, then what still runs as those uids is killed in one
  // pass, and only then are the locks removed.
  const stale = new Map<number, { lockFile: string; guard: string }>();
  try {
    for (const name of readdirSync(dir)) {
      const m = /^(\d+)\.lock$/.exec(name);
      if (!m) continue;
      const lockFile = `${dir}/${name}`;
      if (ownerIsAlive(lockFile)) continue;
      const guard = `${lockFile}.reclaim`;
      if (!tryCreate(guard)) continue;
      if (ownerIsAlive(lockFile)) tryUnlink(guard);
      else stale.set(Number(m[1]), { lockFile, guard });
    }
    killOrphansOf(new Set(stale.keys()));
    for (const { lockFile } of stale.values()) tryUnlink(lockFile);
    return [...stale.keys()];
  } finally {
    for (const { guard } of stale.values()) tryUnlink(guard);
  }
}

let shared: UidPool | undefined;

/** The process-wide pool (environment-configured). */
export function defaultUidPool(): UidPool {
  shared ??= new UidPool();
  return shared;
}
