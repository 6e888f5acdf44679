import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { runtimeSubdir } from './runtime-dir.js';

const PASSWD = 'root:x:0:0:root:/:/bin/sh\nsandbox:x:1000:1000:sandbox:/workspace:/bin/sh\n';
const GROUP = 'root:x:0:\nsandbox:x:1000:\n';

/**
 * The host /etc entries runtimes need, and nothing secret (no shadow, no ssl/private, no hostname or
 * the host's accounts). `[source, path inside /etc]`.
 */
export const SANDBOX_ETC_ENTRIES: readonly (readonly [string, string])[] = [
  ['/etc/ld.so.cache', 'ld.so.cache'],
  ['/etc/alternatives', 'alternatives'],
  ['/etc/ssl/certs', 'ssl/certs'],
  ['/etc/ssl/openssl.cnf', 'ssl/openssl.cnf'],
  ['/etc/ca-certificates', 'ca-certificates'],
  ['/etc/java-17-openjdk', 'java-17-openjdk'],
  ['/etc/localtime', 'localtime'],
  ['/etc/mime.types', 'mime.types'],
  ['/etc/php', 'php'],
  ['/etc/perl', 'perl'],
  ['/etc/python3', 'python3'],
  ['/etc/python3.11', 'python3.11'],
  // The rest of the catalog's runtimes (languages/catalog/) read these at start-up.
  ['/etc/matplotlibrc', 'matplotlibrc'],
  ['/etc/fonts', 'fonts'],
  ['/etc/R', 'R'],
  ['/etc/groovy', 'groovy'],
  ['/etc/mono', 'mono'],
  ['/etc/fpc.cfg', 'fpc.cfg'],
  ['/etc/fpc-3.2.2.cfg', 'fpc-3.2.2.cfg'],
  ['/etc/ldc2.conf', 'ldc2.conf'],
  ['/etc/nim', 'nim'],
  ['/etc/octaverc', 'octaverc'],
  ['/etc/racket', 'racket'],
  ['/etc/sbclrc', 'sbclrc'],
  ['/etc/gnucobol', 'gnucobol'],
  // Debian keeps GHC's global package database under /var, which the sandbox does not have.
  ['/var/lib/ghc/package.conf.d', 'ghc/package.conf.d'],
];

let etcDir: string | undefined;

/**
 * The sandbox's whole /etc as one read-only folder: a copy of SANDBOX_ETC_ENTRIES plus passwd and group.
 * One bind instead of a dozen saves bubblewrap about a millisecond per sandbox (it re-reads the mount
 * table after every bind). The copy is keyed by the sources' modification times and sizes, so a package
 * update (a new ld.so.cache, new alternatives) makes a new copy the next time a runner starts; copies
 * are shared by every kiln process on the host.
 */
export function sandboxEtcDir(): string {
  if (etcDir) return etcDir;
  const present = SANDBOX_ETC_ENTRIES.filter(([src]) => existsSync(src));
  const key = createHash('sha256');
  for (const [src] of present) {
    const st = lstatSync(src);
    key.update(`${src}:${st.mtimeMs}:${st.size}\n`);
  }
  key.update(PASSWD + GROUP);
  const parent = runtimeSubdir('etc', 0o755);
  const dir = `${parent}/${key.digest('hex').slice(0, 16)}`;
  if (!existsSync(dir)) {
    const tmp = mkdtempSync(`${parent}/.building-`);
    try {
      for (const [src, rel] of present) {
        const dest = `${tmp}/${rel}`;
        mkdirSync(dest.slice(0, dest.lastIndexOf('/')), { recursive: true });
        // cp -a keeps symlinks as symlinks: /etc/alternatives and ssl/certs point into /usr, bound too.
        const r = spawnSync('cp', ['-a', src, dest], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`could not copy ${src} for the sandbox's /etc: ${r.stderr.trim()}`);
      }
      writeFileSync(`${tmp}/passwd`, PASSWD, { mode: 0o644 });
      writeFileSync(`${tmp}/group`, GROUP, { mode: 0o644 });
      chmodSync(tmp, 0o755);
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      // Another process may have won the race to build the same copy.
      if (!existsSync(dir)) throw err;
    }
  }
  etcDir = dir;
  return dir;
}
