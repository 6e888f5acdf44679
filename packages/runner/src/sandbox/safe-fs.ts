import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  read,
  readdirSync,
  readSync,
  type Stats,
  writeSync,
} from 'node:fs';

/**
 * File access beneath a root folder the sandbox can write to, without ever following a link it planted.
 * Node has no openat(2), so each path component is opened through `/proc/self/fd/<dirfd>/<name>` with
 * O_NOFOLLOW: the kernel resolves the magic link to the folder we already hold open (not to a path the
 * sandbox could swap), and O_NOFOLLOW refuses a symlink as the one new component. Every step is checked
 * with fstat: folders and regular files only, on the root's device (no mount point crossed), and regular
 * files with a single link (a hard link could point at a file outside the workspace).
 */

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;
// Node's constants omit O_CLOEXEC; Linux's value is 0o2000000. Our fds never reach a child anyway.
const O_CLOEXEC_SAFE = 0o2000000;

export class UnsafePathError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`refused ${JSON.stringify(path)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** Splits a relative path into components; refuses absolute paths, `..`, `.`, empty parts and NUL. */
export function splitRelativePath(path: string): string[] {
  if (path.includes('\0')) throw new UnsafePathError(path, 'contains NUL');
  if (path.startsWith('/')) throw new UnsafePathError(path, 'absolute paths are not allowed');
  const parts = path.split('/').filter((p) => p !== '');
  if (parts.length === 0) throw new UnsafePathError(path, 'empty path');
  for (const p of parts) {
    if (p === '..' || p === '.') throw new UnsafePathError(path, '`.` and `..` are not allowed');
  }
  return parts;
}

const via = (dirFd: number, name: string) => `/proc/self/fd/${dirFd}/${name}`;

function openDirFd(path: string): number {
  return openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC_SAFE);
}

/** A folder held open beneath the root, with the root's device for mount-point checks. */
export class SafeRoot {
  private readonly rootDev: number;

  constructor(readonly rootPath: string) {
    const fd = openDirFd(rootPath);
    try {
      this.rootDev = fstatSync(fd).dev;
    } finally {
      closeSync(fd);
    }
  }

  private checkDir(fd: number, path: string): void {
    const st = fstatSync(fd);
    if (!st.isDirectory()) throw new UnsafePathError(path, 'not a folder');
    if (st.dev !== this.rootDev) throw new UnsafePathError(path, 'crosses a mount point');
  }

  private checkFile(st: Stats, path: string): void {
    if (!st.isFile()) throw new UnsafePathError(path, 'not a regular file');
    if (st.nlink > 1) throw new UnsafePathError(path, 'has more than one hard link');
    if (st.dev !== this.rootDev) throw new UnsafePathError(path, 'crosses a mount point');
  }

  /**
   * Opens the folder `parts` (relative to the root) and returns its fd; with `create`, missing folders are
   * made (mode 0755, owned by `owner`). The caller closes the fd.
   */
  openDir(parts: string[], path: string, create?: { uid: number; gid: number }): number {
    let fd = openDirFd(this.rootPath);
    try {
      for (const name of parts) {
        let next: number;
        try {
          next = openDirFd(via(fd, name));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' && create) {
            mkdirSync(via(fd, name), { mode: 0o755 });
            next = openDirFd(via(fd, name));
            fchownSync(next, create.uid, create.gid);
          } else if (code === 'ELOOP' || code === 'ENOTDIR') {
            throw new UnsafePathError(path, `${name} is a link or not a folder`);
          } else {
            throw err;
          }
        }
        closeSync(fd);
        fd = next;
        this.checkDir(fd, path);
      }
      return fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Reads a regular file, refusing links and special files; throws when it is larger than `maxBytes`. */
  readFile(path: string, maxBytes = Number.MAX_SAFE_INTEGER): Buffer {
    const parts = splitRelativePath(path);
    const name = parts.pop() as string;
    const dirFd = this.openDir(parts, path);
    let fd: number;
    try {
      fd = this.openFileAt(dirFd, name, path, maxBytes);
    } finally {
      closeSync(dirFd);
    }
    try {
      return readAll(fd, fstatSync(fd).size, maxBytes);
    } finally {
      closeSync(fd);
    }
  }

  /** Opens the regular file `name` in the folder `dirFd` for reading, checked (see checkFile) and within `maxBytes`. */
  private openFileAt(dirFd: number, name: string, path: string, maxBytes: number): number {
    let fd: number;
    try {
      // O_NONBLOCK: opening a FIFO the sandbox planted must not hang the runner.
      fd = openSync(via(dirFd, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC_SAFE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new UnsafePathError(path, 'is a symbolic link');
      throw err;
    }
    try {
      const st = fstatSync(fd);
      this.checkFile(st, path);
      if (st.size > maxBytes) throw new UnsafePathError(path, `larger than ${maxBytes} bytes`);
      return fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /**
   * Writes a regular file (creating parent folders), owned by `owner`. An existing file is replaced
   * only when it is a regular file with one link; links and special files are refused.
   */
  writeFile(path: string, content: Buffer | string, mode: number, owner: { uid: number; gid: number }): void {
    const parts = splitRelativePath(path);
    const name = parts.pop() as string;
    const dirFd = this.openDir(parts, path, owner);
    let fd: number;
    try {
      try {
        fd = openSync(via(dirFd, name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC_SAFE, mode);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        try {
          fd = openSync(via(dirFd, name), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC_SAFE);
        } catch (err2) {
          if ((err2 as NodeJS.ErrnoException).code === 'ELOOP') throw new UnsafePathError(path, 'is a symbolic link');
          throw err2;
        }
        try {
          this.checkFile(fstatSync(fd), path);
          ftruncateSync(fd, 0);
        } catch (err3) {
          closeSync(fd);
          throw err3;
        }
      }
    } finally {
      closeSync(dirFd);
    }
    try {
      const data = typeof content === 'string' ? Buffer.from(content) : content;
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fchmodSync(fd, mode);
      fchownSync(fd, owner.uid, owner.gid);
    } finally {
      closeSync(fd);
    }
  }

  /** Lists one folder: names with their type from lstat semantics (links are reported, not followed). */
  list(path: string): { name: string; type: 'file' | 'dir' | 'symlink' | 'other'; size_bytes: number }[] {
    const parts = path === '' || path === '.' ? [] : splitRelativePath(path);
    const dirFd = this.openDir(parts, path);
    try {
      return readdirSync(`/proc/self/fd/${dirFd}`, { withFileTypes: true }).map((d) => {
        const type = d.isFile() ? 'file' : d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'symlink' : 'other';
        let size = 0;
        if (type === 'file') {
          try {
            const fd = openSync(via(dirFd, d.name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC_SAFE);
            try {
              size = fstatSync(fd).size;
            } finally {
              closeSync(fd);
            }
          } catch {
            // raced away; report size 0
          }
        }
        return { name: d.name, type, size_bytes: size };
      });
    } finally {
      closeSync(dirFd);
    }
  }

  /** Opens the root folder itself; the caller closes the fd. */
  openRoot(): number {
    const fd = openDirFd(this.rootPath);
    try {
      this.checkDir(fd, '');
      return fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /**
   * Opens the folder `name` inside the folder held by `dirFd` (never through a link, never across a mount):
   * a walk holds each level open, so depth costs one open per folder instead of one per level.
   */
  openChildDir(dirFd: number, name: string, path: string): number {
    let fd: number;
    try {
      fd = openDirFd(via(dirFd, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw new UnsafePathError(path, `${name} is a link or not a folder`);
      throw err;
    }
    try {
      this.checkDir(fd, path);
      return fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /**
   * Reads the regular file `name` in the folder held by `dirFd`, without blocking the event loop: the
   * reads go to libuv's thread pool. Refuses links, special files, extra hard links and files larger
   * than `maxBytes`.
   */
  async readFileAt(dirFd: number, name: string, path: string, maxBytes: number): Promise<Buffer> {
    const fd = this.openFileAt(dirFd, name, path, maxBytes);
    try {
      const buf = Buffer.alloc(fstatSync(fd).size);
      let off = 0;
      while (off < buf.length) {
        const n = await readAsync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      return off === buf.length ? buf : buf.subarray(0, off);
    } finally {
      closeSync(fd);
    }
  }
}

const readAsync = (fd: number, buf: Buffer, off: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) => read(fd, buf, off, length, position, (err, n) => (err ? reject(err) : resolve(n))));

function readAll(fd: number, size: number, maxBytes: number): Buffer {
  const want = Math.min(size, maxBytes);
  const buf = Buffer.alloc(want);
  let off = 0;
  while (off < want) {
    const n = readSync(fd, buf, off, want - off, off);
    if (n === 0) break;
    off += n;
  }
  return off === want ? buf : buf.subarray(0, off);
}
