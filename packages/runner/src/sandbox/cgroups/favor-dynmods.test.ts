import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { enableFavorDynmods } from './favor-dynmods.js';
import { detectCgroupBackend } from './index.js';

describe('favordynmods on the cgroup2 mount', () => {
  it('is set once the backend is detected (fast cgroup joins), and can be turned off', () => {
    const backend = detectCgroupBackend();
    const mountPoint = backend.version === 2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
    const line = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[1] === mountPoint && l.split(' ')[2] === 'cgroup2');
    if (line) expect(['already', 'unsupported']).toContain(enableFavorDynmods(mountPoint));
    if (line && enableFavorDynmods(mountPoint) === 'already') expect(line).toContain('favordynmods');
    process.env.KILN_CGROUP_FAVOR_DYNMODS = '0';
    try {
      expect(enableFavorDynmods(mountPoint)).toBe('disabled');
    } finally {
      delete process.env.KILN_CGROUP_FAVOR_DYNMODS;
    }
    expect(enableFavorDynmods('/no/such/mount')).toBe('unsupported');
  });
});
