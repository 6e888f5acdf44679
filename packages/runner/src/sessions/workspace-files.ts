import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  createReadStream,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
  type ReadStream,
} from 'node:fs';
import type { Readable } from 'node:stream';
import { KilnError } from '@kiln/core';
import { SafeRoot, splitRelativePath, UnsafePathError } from '../sandbox/safe-fs.js';
import type { Workspace } from '../sandbox/workspace.js';

const O_CLOEXEC = 0o2000000;
/** Entries a listing answers at most: a folder of a million files must not become one huge answer. */
const MAX_LIST_ENTRIES = 10_000;
const via = (dirFd: number, name: string) => `/proc/self/fd/${dirFd}/${name}`;

export interface FileEntryView {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size_bytes: number;
  mode: number;
  modified_at: string;
}

/**
 * Streamed file operations on a session's /workspace (issue 8, point 4), all through folder fds opened
 * with O_NOFOLLOW one component at a time (safe-fs.ts): `..`, absolute paths, links the sandbox planted
 * and mount points are refused, never followed. A write goes to a hidden temporary file beside the
 * target and is renamed over it only when every byte fit, so a failed write leaves no partial file.
 */
export class WorkspaceFiles {
  private readonly root: SafeRoot;
  private readonly owner: { uid: number; gid: number };

  constructor(workspace: Workspace) {
    this.root = new SafeRoot(workspace.workDir);
    this.owner = { uid: workspace.uid, gid: workspace.gid };
  }

  /** Writes `body` to `path` (parents made), replacing a regular file; resolves to the bytes written. */
  async write(path: string, body: Readable, mode = 0o644): Promise<number> {
    const { dirFd, name } = this.parent(path, true);
    const temp = `.kiln-upload-${randomBytes(8).toString('hex')}`;
    let fd: number | undefined;
    let written = 0;
    try {
      this.refuseNonFile(dirFd, name, path);
      fd = openSync(via(dirFd, temp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | O_CLOEXEC, 0o600);
      for await (const chunk of body) {
        const data = chunk as Buffer;
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, data.length - off);
        written += data.length;
      }
      fchmodSync(fd, mode & 0o777);
      fchownSync(fd, this.owner.uid, this.owner.gid);
      closeSync(fd);
      fd = undefined;
      // rename(2) replaces the name itself: a link planted there meanwhile is replaced, not followed.
      renameSync(via(dirFd, temp), via(dirFd, name));
      return written;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(via(dirFd, temp));
      } catch {
        // not made, or already renamed
      }
      throw fileError(path, err);
    } finally {
      closeSync(dirFd);
    }
  }

  /** A stream of the regular file at `path` and its size. */
  read(path: string): { stream: ReadStream; size: number } {
    const { dirFd, name } = this.parent(path, false);
    try {
      const fd = openSync(via(dirFd, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC);
      const st = fstatSync(fd);
      if (!st.isFile() || st.nlink > 1) {
        closeSync(fd);
        throw new UnsafePathError(path, st.isFile() ? 'has more than one hard link' : 'not a regular file');
      }
      return { stream: createReadStream('', { fd, autoClose: true }), size: st.size };
    } catch (err) {
      throw fileError(path, err);
    } finally {
      closeSync(dirFd);
    }
  }

  list(path: string): FileEntryView[] {
    let dirFd: number;
    try {
      dirFd = this.root.openDir(path === '' ? [] : splitRelativePath(path), path);
    } catch (err) {
      throw fileError(path, err);
    }
    try {
      const names = readdirSync(via(dirFd, '')).slice(0, MAX_LIST_ENTRIES);
      return names.map((name) => {
        const st = lstatSync(via(dirFd, name));
        const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
        return { name, type, size_bytes: st.size, mode: st.mode & 0o7777, modified_at: st.mtime.toISOString() };
      });
    } finally {
      closeSync(dirFd);
    }
  }

  mkdir(path: string): void {
    try {
      closeSync(this.root.openDir(splitRelativePath(path), path, this.owner));
    } catch (err) {
      throw fileError(path, err);
    }
  }

  /** Removes a file, a link (not its target) or a folder with what is in it. */
  remove(path: string): void {
    const { dirFd, name } = this.parent(path, false);
    try {
      lstatSync(via(dirFd, name));
      rmSync(via(dirFd, name), { recursive: true, force: false });
    } catch (err) {
      throw fileError(path, err);
    } finally {
      closeSync(dirFd);
    }
  }

  rename(from: string, to: string): void {
    const a = this.parent(from, false);
    let b: { dirFd: number; name: string } | undefined;
    try {
      b = this.parent(to, true);
      lstatSync(via(a.dirFd, a.name));
      renameSync(via(a.dirFd, a.name), via(b.dirFd, b.name));
    } catch (err) {
      throw fileError(`${from} → ${to}`, err);
    } finally {
      closeSync(a.dirFd);
      if (b) closeSync(b.dirFd);
    }
  }

  /** The folder holding `path`'s last component, opened safely, and that component. */
  private parent(path: string, create: boolean): { dirFd: number; name: string } {
    try {
      const parts = splitRelativePath(path);
      const name = parts.pop()!;
      return { dirFd: this.root.openDir(parts, path, create ? this.owner : undefined), name };
    } catch (err) {
      throw fileError(path, err);
    }
  }

  /** An upload may replace a regular file; a folder, a link or a special file in its place is refused. */
  private refuseNonFile(dirFd: number, name: string, path: string): void {
    try {
      const st = lstatSync(via(dirFd, name));
      if (st.isSymbolicLink()) throw new UnsafePathError(path, 'is a symbolic link');
      if (!st.isFile()) throw new UnsafePathError(path, 'is not a regular file');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** Workspace errors as the API's: a refused path, a missing file, a full workspace. */
function fileError(path: string, err: unknown): Error {
  if (err instanceof KilnError) return err;
  if (err instanceof UnsafePathError) return new KilnError('VALIDATION_FAILED', `${path}: ${err.message}`, { field: 'path' });
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new KilnError('NOT_FOUND', `${path} does not exist in /workspace`);
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new KilnError('PAYLOAD_TOO_LARGE', `${path}: does not fit in the session's disk (disk_bytes); nothing was written`);
  }
  if (code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'EISDIR' || code === 'ENOTDIR') {
    return new KilnError('CONFLICT', `${path}: ${(err as Error).message.replace(/\/proc\/self\/fd\/\d+\//g, '')}`);
  }
  if (code === 'ELOOP') return new KilnError('VALIDATION_FAILED', `${path}: a link is in the way`, { field: 'path' });
  return err as Error;
}
