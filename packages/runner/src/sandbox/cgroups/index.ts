import { existsSync } from 'node:fs';
import type { CgroupBackend } from './types.js';
import { CgroupV1Backend } from './v1.js';
import { CgroupV2Backend } from './v2.js';
import { enableFavorDynmods } from './favor-dynmods.js';

export type { CgroupBackend, CgroupBind, CgroupLimits, CgroupUsage, ExistingCgroup, SandboxCgroup } from './types.js';
export { CgroupV1Backend } from './v1.js';
export { CgroupV2Backend } from './v2.js';
export { enableFavorDynmods } from './favor-dynmods.js';

let detected: CgroupBackend | undefined;

/**
 * The backend for this host: v2 when `root` is a cgroup2 mount (it has cgroup.controllers), v1 when it
 * holds per-controller hierarchies. Cached: detection and the `kiln` parents are set up once, and the
 * cgroup2 mount gets `favordynmods` (see favor-dynmods.ts) so joining a sandbox's cgroups is fast.
 */
export function detectCgroupBackend(root = '/sys/fs/cgroup'): CgroupBackend {
  if (detected && root === '/sys/fs/cgroup') return detected;
  let backend: CgroupBackend;
  if (existsSync(`${root}/cgroup.controllers`)) backend = new CgroupV2Backend(root);
  else if (existsSync(`${root}/memory`) && existsSync(`${root}/pids`)) backend = new CgroupV1Backend(root);
  else throw new Error(`no usable cgroup hierarchy under ${root} (need memory and pids controllers)`);
  if (root === '/sys/fs/cgroup') {
    detected = backend;
    enableFavorDynmods(backend.version === 2 ? root : `${root}/unified`);
  }
  return backend;
}
