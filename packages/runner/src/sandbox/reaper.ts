import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import type { CgroupBackend } from './cgroups/index.js';
import { nativeHelperPath } from './native-paths.js';
import { runtimeDir } from './runtime-dir.js';
import { removeStaleUidLocks } from './uid-pool.js';

export interface ReapOptions {
  cgroups: CgroupBackend;
  /** Folder of the uid pool's locks. @default `<runtime>/uids` */
  uidLockDir?: string;
  /** Leftovers younger than this are left alone (a sandbox may be starting or cleaning up). @default 60 000 */
  minAgeMs?: number;
}

export interface ReapReport {
  cgroups: string[];
  workspaces: string[];
  /** Uids whose lock was held by a dead process. */
  uids: number[];
  errors: string[];
}

function unmount(root: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(nativeHelperPath('kiln-launch'), ['umount', root], (err, _out, stderr) =>
      err ? reject(new Error(stderr.trim() || err.message)) : resolve(),
    );
  });
}

/**
 * Removes what a crashed runner left behind: sandbox cgroups with no process in them, and workspace
 * mounts whose sandbox has no cgroup any more, each older than `minAgeMs`. Live sandboxes always have
 * processes in their cgroup, so they are never touched. Uid locks of dead processes go too (the pool
 * would reclaim them anyway, lazily), and with them a sandbox still running as such a uid, which its
 * runner died before it could take down (uid-pool.ts); its emptied cgroup goes at the next pass. Best
 * effort: failures are reported, not thrown.
 */
export async function reapStaleSandboxes(options: ReapOptions): Promise<ReapReport> {
  const minAgeMs = options.minAgeMs ?? 60_000;
  const report: ReapReport = { cgroups: [], workspaces: [], uids: [], errors: [] };
  let existing: ReturnType<CgroupBackend['list']> = [];
  try {
    existing = options.cgroups.list();
  } catch (err) {
    report.errors.push(`listing cgroups: ${(err as Error).message}`);
  }
  await Promise.all(
    existing
      .filter((c) => c.empty && c.ageMs >= minAgeMs)
      .map(async (c) => {
        try {
          await options.cgroups.attach(c.name).remove();
          report.cgroups.push(c.name);
        } catch (err) {
          report.errors.push(`cgroup ${c.name}: ${(err as Error).message}`);
        }
      }),
  );
  const live = new Set(existing.filter((c) => !report.cgroups.includes(c.name)).map((c) => c.name));
  const dir = `${runtimeDir()}/workspaces`;
  if (existsSync(dir)) {
    const now = Date.now();
    for (const id of readdirSync(dir)) {
      if (live.has(id)) continue;
      const root = `${dir}/${id}`;
      try {
        if (now - statSync(root).mtimeMs < minAgeMs) continue;
        await unmount(root);
        report.workspaces.push(id);
      } catch (err) {
        report.errors.push(`workspace ${id}: ${(err as Error).message}`);
      }
    }
  }
  try {
    report.uids = removeStaleUidLocks(options.uidLockDir);
  } catch (err) {
    report.errors.push(`uid locks: ${(err as Error).message}`);
  }
  return report;
}
