import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CredentialKeeper } from './control-plane-client.js';

/** Refuses a file or folder that group or others may read, naming the `chmod` that fixes it. */
export function assertPrivate(path: string, what: string): void {
  const stat = statSync(path);
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) === 0) return;
  throw new Error(
    `${what} ${path} is open to other users (mode ${mode.toString(8).padStart(4, '0')}). Fix: chmod ${stat.isDirectory() ? 700 : 600} ${path}`,
  );
}

/**
 * The runner's data dir holds its credential: it is made 0700, and a start on one that group or others
 * may enter is refused (with the fix), as the control plane does with its own.
 */
export function preparePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  assertPrivate(dir, "the runner data dir (it holds the runner's credential)");
}

/** The runner's credential in `<data dir>/credential`, mode 0600, written whole (temp file, rename). */
export function credentialFile(dataDir: string): CredentialKeeper {
  const file = join(dataDir, 'credential');
  return {
    load() {
      if (!existsSync(file)) return undefined;
      assertPrivate(file, "the runner's credential");
      const credential = readFileSync(file, 'utf8').trim();
      return credential === '' ? undefined : credential;
    },
    save(credential) {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${credential}\n`, { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, file);
    },
  };
}
