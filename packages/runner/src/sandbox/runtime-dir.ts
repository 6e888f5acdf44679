import { chmodSync, mkdirSync } from 'node:fs';

/**
 * The runner's runtime folder (`/run/kiln`, or `KILN_RUNTIME_DIR`), shared by every kiln process on the
 * host: uid locks, cached seccomp programs, sandbox workspaces. Mode 0711 so a sandbox uid can pass
 * through to its own workspace without listing anyone else's.
 */
export function runtimeDir(): string {
  return process.env.KILN_RUNTIME_DIR ?? '/run/kiln';
}

const made = new Set<string>();

/** `runtimeDir()/sub`, created (mode 0711) on first use. */
export function runtimeSubdir(sub: string, mode = 0o711): string {
  const dir = `${runtimeDir()}/${sub}`;
  if (!made.has(dir)) {
    mkdirSync(dir, { recursive: true, mode });
    chmodSync(runtimeDir(), 0o711);
    chmodSync(dir, mode);
    made.add(dir);
  }
  return dir;
}
