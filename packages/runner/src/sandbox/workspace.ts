import { mkdirSync } from 'node:fs';
import { KilnError, newId } from '@kiln/core';
import { collectFiles, type CollectBounds, type CollectOutcome } from './collect.js';
import type { WorkspaceFile } from './driver.js';
import { nativeHelperPath } from './native-paths.js';
import { runHelper } from './process-launcher.js';
import { runtimeSubdir } from './runtime-dir.js';
import { SafeRoot, splitRelativePath, UnsafePathError } from './safe-fs.js';

export { UnsafePathError, splitRelativePath } from './safe-fs.js';

/** Refuses (VALIDATION_FAILED, naming the field) a file path the workspace would not write: before any resource is taken. */
export function refuseUnsafeFilePaths(files: readonly WorkspaceFile[]): void {
  files.forEach((f, i) => {
    try {
      splitRelativePath(f.path);
    } catch (err) {
      if (err instanceof UnsafePathError) throw new KilnError('VALIDATION_FAILED', err.message, { field: `files.${i}.path` });
      throw err;
    }
  });
}

/**
 * A sandbox's writable storage: one size-capped tmpfs per sandbox, mounted on the host at
 * `<runtime>/workspaces/<id>` and owned by the sandbox uid. It holds three folders bound into the sandbox:
 * `work` → /workspace, `tmp` → /tmp, `shm` → /dev/shm. Why a tmpfs: the size cap (disk_bytes) covers the
 * workspace, /tmp and /dev/shm together, the host disk can never fill, its pages are charged to the
 * sandbox's memory cgroup, a hard link to a host file is impossible (another filesystem), and removal is
 * one lazy unmount that never walks anything the sandbox made. Files are read and written through
 * SafeRoot, which never follows a link the sandbox planted.
 */
export interface WorkspaceOptions {
  uid: number;
  gid: number;
  /** Size cap of the whole tmpfs (workspace + /tmp + /dev/shm). */
  diskBytes: number;
  /** Folder name; @default a fresh `sbx_` id. */
  id?: string;
}

export class Workspace {
  /** Host path of the tmpfs mount. */
  readonly root: string;
  /** Host path bound at /workspace. */
  readonly workDir: string;
  /** Host path bound at /tmp. */
  readonly tmpDir: string;
  /** Host path bound at /dev/shm. */
  readonly shmDir: string;
  private safeRoot: SafeRoot | undefined;
  private removed: Promise<void> | undefined;

  private constructor(
    readonly id: string,
    root: string,
    readonly uid: number,
    readonly gid: number,
  ) {
    this.root = root;
    this.workDir = `${root}/work`;
    this.tmpDir = `${root}/tmp`;
    this.shmDir = `${root}/shm`;
  }

  /** Opened on first use: with `prepare()`, the folder exists only once kiln-launch has mounted it. */
  private get work(): SafeRoot {
    this.safeRoot ??= new SafeRoot(this.workDir);
    return this.safeRoot;
  }

  private static place(options: WorkspaceOptions): { id: string; root: string; inodes: number } {
    const id = options.id ?? newId('sandbox');
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`bad workspace id ${id}`);
    const root = `${runtimeSubdir('workspaces')}/${id}`;
    mkdirSync(root, { mode: 0o700 });
    // One inode per 4 KiB of cap, at least 1024: enough for real work, bounded against inode floods.
    return { id, root, inodes: Math.max(1024, Math.floor(options.diskBytes / 4096)) };
  }

  /**
   * Makes only the mount point and returns the `--workspace` argument for kiln-launch, which mounts the
   * tmpfs and makes the folders itself (no extra process).
   * Write files only after kiln-launch reported it ready (its sync handshake).
   */
  static prepare(options: WorkspaceOptions): { workspace: Workspace; launchArg: string } {
    const { id, root, inodes } = Workspace.place(options);
    return {
      workspace: new Workspace(id, root, options.uid, options.gid),
      launchArg: `${root}:${options.diskBytes}:${inodes}`,
    };
  }

  /** Writes files into /workspace (relative paths only; links and `..` refused). */
  writeFiles(files: readonly WorkspaceFile[]): void {
    for (const f of files) this.writeFile(f.path, f.content, f.mode ?? 0o644);
  }

  writeFile(path: string, content: Buffer | string, mode = 0o644): void {
    this.work.writeFile(path, content, mode & 0o777, { uid: this.uid, gid: this.gid });
  }

  readFile(path: string, maxBytes?: number): Buffer {
    return this.work.readFile(path, maxBytes);
  }

  listFiles(path: string): ReturnType<SafeRoot['list']> {
    return this.work.list(path);
  }

  /**
   * Collects regular files under /workspace matching any glob, within bounds (collect.ts). Links, special
   * files and files with more than one hard link are skipped, never followed.
   */
  collect(globs: readonly string[], bounds: Partial<CollectBounds> = {}): Promise<CollectOutcome> {
    return collectFiles(this.work, globs, bounds);
  }

  /** Unmounts (lazily, with everything below) and removes the folder. Idempotent. */
  remove(): Promise<void> {
    this.removed ??= unmountBatched(this.root);
    return this.removed;
  }
}

/**
 * Workspace removals waiting for the next batch: one kiln-launch process unmounts all of them, so a
 * busy runner pays one exec per batch instead of one per sandbox.
 */
let batch: { root: string; resolve: () => void; reject: (err: Error) => void }[] = [];
const BATCH_DELAY_MS = 5;
const BATCH_MAX = 64;

function flushBatch(): void {
  const items = batch;
  batch = [];
  if (items.length === 0) return;
  const settle = (failure: string | undefined, stderr: string) => {
    for (const item of items) {
      // On a partial failure the helper names the folders it could not remove.
      if (failure !== undefined && (stderr.includes(`${item.root}:`) || !stderr.includes('kiln-launch:'))) {
        item.reject(new Error(`could not remove the workspace ${item.root}: ${stderr.trim() || failure}`));
      } else {
        item.resolve();
      }
    }
  };
  // Through kiln-spawner like the sandboxes themselves (process-launcher.ts): no fork of Node per batch.
  runHelper(nativeHelperPath('kiln-launch'), ['umount', ...items.map((i) => i.root)]).then(
    (r) => settle(r.error ?? (r.code === 0 ? undefined : `kiln-launch umount exited ${r.code ?? r.signal}`), r.stderr),
    (err: unknown) => settle(err instanceof Error ? err.message : String(err), ''),
  );
}

function unmountBatched(root: string): Promise<void> {
  return new Promise((resolve, reject) => {
    batch.push({ root, resolve, reject });
    if (batch.length >= BATCH_MAX) flushBatch();
    else if (batch.length === 1) setTimeout(flushBatch, BATCH_DELAY_MS);
  });
}
