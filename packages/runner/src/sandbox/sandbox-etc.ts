import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { runtimeSubdir } from './runtime-dir.js';

const PASSWD = 'root:x:0:0:root:/:/bin/sh\nsandbox:x:1000:1000:sandbox:/workspace:/bin/sh\n';
let passwdPath: string | undefined;

/**
 * A minimal /etc/passwd naming the sandbox user (uid 1000 inside), so tools that look the user up
 * (Java's user.home, Python's getpass, `id`, `whoami`) work without seeing the host's accounts.
 */
export function sandboxPasswdFile(): string {
  if (passwdPath) return passwdPath;
  const path = `${runtimeSubdir('etc', 0o755)}/passwd`;
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}`;
    writeFileSync(tmp, PASSWD, { mode: 0o644 });
    // rename is atomic: a concurrent reader sees no file or the whole file.
    renameSync(tmp, path);
  }
  passwdPath = path;
  return path;
}
