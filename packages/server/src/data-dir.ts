import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';

/**
 * The control plane's data dir holds the SQLite database (tenants' env, stdin and output), the operator
 * key, the secrets key and local artifacts: it is made 0700, and a start on one that group or others may
 * enter is refused with the fix, whoever made it.
 */
export function preparePrivateDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `the data dir ${dir} is open to other users (mode ${mode.toString(8).padStart(4, '0')}); it holds the database, ` +
        `keys and artifacts. Fix: chmod 700 ${dir}  (and chmod 600 the files in it)`,
    );
  }
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
