import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Moving a process into a cgroup takes a global lock whose first writer waits for an RCU grace period:
 * measured here, the first cgroup join of each sandbox cost 8–15 ms, more than everything else kiln adds
 * to a run. The cgroup2 mount option `favordynmods` (Linux 6.0+) keeps that lock ready for writers, at a
 * tiny cost to fork and exit; with it, a python hello world's overhead over bare python fell from about
 * 17 ms to 7 ms. The lock is global, so setting the option on the cgroup2 mount (the root one on v2, the
 * `unified` one in the v1 hybrid layout) helps every hierarchy.
 *
 * This changes a host-wide mount option, which a runner node is entitled to: it owns the node's sandboxes.
 * `KILN_CGROUP_FAVOR_DYNMODS=0` turns it off. util-linux `mount -o remount,…` keeps the mount's other
 * options (nsdelegate, memory_recursiveprot), which a bare remount would clear. Best effort: kernels
 * without the option refuse it and nothing changes.
 */
export function enableFavorDynmods(mountPoint: string): 'enabled' | 'already' | 'unsupported' | 'disabled' {
  if (process.env.KILN_CGROUP_FAVOR_DYNMODS === '0') return 'disabled';
  let line: string | undefined;
  try {
    line = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .find((l) => {
        const [, target, type] = l.split(' ');
        return target === mountPoint && type === 'cgroup2';
      });
  } catch {
    return 'unsupported';
  }
  if (!line) return 'unsupported';
  if ((line.split(' ')[3] ?? '').split(',').includes('favordynmods')) return 'already';
  const r = spawnSync('mount', ['-o', 'remount,favordynmods', mountPoint], { stdio: 'ignore' });
  return r.status === 0 ? 'enabled' : 'unsupported';
}
