import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';

/** Refuses a file or folder that group or others may read, naming the `chmod` that fixes it. */
export function assertPrivate(path: string, what: string): void {
  const stat = statSync(path);
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) === 0) return;
  const fix = stat.isDirectory() ? `chmod 700 ${path}  (and chmod 600 the files in it)` : `chmod 600 ${path}`;
  throw new Error(`${what} ${path} is open to other users (mode ${mode.toString(8).padStart(4, '0')}). Fix: ${fix}`);
}

/**
 * The control plane's data dir holds the SQLite database (tenants' env, stdin and output), the operator
 * key, the secrets key and local artifacts: it is made 0700, and a start on one that group or others may
 * enter is refused with the fix, whoever made it.
 */
export function preparePrivateDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  assertPrivate(dir, 'the data dir (it holds the database, keys and artifacts)');
}

/**
 * Makes the SQLite file 0600 before SQLite opens it: its -wal and -shm files take the database file's
 * mode when SQLite creates them. Files left by an older start are tightened too.
 */
export function prepareSqliteFiles(file: string): void {
  if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    if (existsSync(path)) chmodSync(path, 0o600);
  }
}
