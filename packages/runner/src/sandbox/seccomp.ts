import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { nativeHelperPath } from './native-paths.js';
import { runtimeSubdir } from './runtime-dir.js';

/**
 * The sandbox's seccomp deny-list (native/seccomp/kiln-seccomp.c), as the raw BPF program
 * `bwrap --seccomp FD` reads. Generated once per variant and per build of the generator, cached in the
 * runtime folder, and reused by every sandbox: the hot path only opens the file.
 */
export type SeccompVariant = 'no-network' | 'network';

const cache = new Map<SeccompVariant, string>();

/** Path of the cached BPF program for the variant, generating it on first use. */
export function seccompProgramPath(variant: SeccompVariant = 'no-network'): string {
  const hit = cache.get(variant);
  if (hit) return hit;
  const generator = nativeHelperPath('kiln-seccomp');
  // The generator's mtime in the name: a rebuilt generator (new rules) never reuses a stale program.
  const stamp = Math.floor(statSync(generator).mtimeMs);
  const path = `${runtimeSubdir('seccomp', 0o755)}/${variant}-${stamp}.bpf`;
  if (!existsSync(path)) {
    const args = variant === 'network' ? ['--allow-network', path] : [path];
    const result = spawnSync(generator, args, { encoding: 'utf8' });
    if (result.status !== 0) {
      throw new Error(`kiln-seccomp failed (${result.status ?? result.signal}): ${result.stderr.trim()}`);
    }
  }
  cache.set(variant, path);
  return path;
}
