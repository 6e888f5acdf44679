import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KilnError } from '@kiln/core';

/**
 * Where kiln's native helpers live: packages/runner/native/build, built by `scripts/setup.sh`
 * (`make -C packages/runner/native`). `KILN_NATIVE_DIR` overrides it (packaged installs).
 * The path is the same from src/sandbox and dist/sandbox, which sit at the same depth.
 */
export const NATIVE_BUILD_DIR =
  process.env.KILN_NATIVE_DIR ?? fileURLToPath(new URL('../../native/build/', import.meta.url));

export type NativeHelper = 'kiln-seccomp' | 'kiln-launch' | 'kiln-init' | 'kiln-spawner' | 'kiln-exec' | 'kiln-egress-pump';

/** The bubblewrap binary; Debian's is not setuid, which is what we want (we drop to a pool uid first). */
export const BWRAP_PATH = process.env.KILN_BWRAP ?? '/usr/bin/bwrap';

const checked = new Set<string>();

/** Path of a native helper; throws a clear error telling the user to run the set-up when it is missing. */
export function nativeHelperPath(name: NativeHelper): string {
  const path = `${NATIVE_BUILD_DIR.replace(/\/$/, '')}/${name}`;
  if (!checked.has(path)) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      throw new KilnError(
        'INTERNAL',
        `the native helper ${name} is missing at ${path}: run \`bash scripts/setup.sh\` (or \`make -C packages/runner/native\`)`,
      );
    }
    checked.add(path);
  }
  return path;
}

/** Throws a clear error when bubblewrap is not installed. */
export function requireBwrap(): string {
  if (!checked.has(BWRAP_PATH)) {
    try {
      accessSync(BWRAP_PATH, constants.X_OK);
    } catch {
      throw new KilnError('INTERNAL', `bubblewrap is missing at ${BWRAP_PATH}: run \`bash scripts/setup.sh\``);
    }
    checked.add(BWRAP_PATH);
  }
  return BWRAP_PATH;
}
