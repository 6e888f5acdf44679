import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { detectCgroupBackend } from './index.js';
import { CgroupV2Backend } from './v2.js';

// A fake cgroup2 tree: plain folders and files, so the backend's reads and writes can be checked here,
// on a cgroup v1 machine. (rmdir works on it because the fake cgroup folder holds only files we delete.)
const root = mkdtempSync('/tmp/kiln-fake-cgroup2-');
writeFileSync(`${root}/cgroup.controllers`, 'cpuset cpu io memory pids\n');
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('cgroup v2 backend (fake tree)', () => {
  it('is chosen by detection when the root has cgroup.controllers', () => {
    expect(detectCgroupBackend(root).version).toBe(2);
  });

  const backend = new CgroupV2Backend(root);

  it('delegates controllers to the kiln parent and writes the limits', () => {
    expect(readFileSync(`${root}/cgroup.subtree_control`, 'utf8')).toBe('+memory +pids +cpu');
    expect(readFileSync(`${root}/kiln/cgroup.subtree_control`, 'utf8')).toBe('+memory +pids +cpu');
    const cg = backend.create('sbx_one', { memoryBytes: 64 << 20, pids: 32, cpuPercent: 50 });
    const dir = `${root}/kiln/sbx_one`;
    expect(readFileSync(`${dir}/memory.max`, 'utf8')).toBe(String(64 << 20));
    expect(readFileSync(`${dir}/memory.swap.max`, 'utf8')).toBe('0');
    expect(readFileSync(`${dir}/pids.max`, 'utf8')).toBe('32');
    expect(readFileSync(`${dir}/cpu.max`, 'utf8')).toBe('50000 100000');
    expect(cg.procsFiles).toEqual([`${dir}/cgroup.procs`]);
    expect(cg.binds).toEqual([{ source: dir, dest: '/sys/fs/cgroup' }]);
  });

  it('reads usage from cpu.stat, memory.peak, memory.events and pids.events, and resets per period', () => {
    const cg = backend.create('sbx_two', { memoryBytes: 64 << 20, pids: 32 });
    const dir = `${root}/kiln/sbx_two`;
    writeFileSync(`${dir}/cpu.stat`, 'usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n');
    writeFileSync(`${dir}/memory.peak`, '12345678\n');
    writeFileSync(`${dir}/memory.events`, 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    writeFileSync(`${dir}/pids.events`, 'max 7\n');
    expect(cg.usage()).toEqual({ cpuTimeMs: 250, memoryPeakBytes: 12345678, oomKills: 1, pidsLimitHits: 7 });
    cg.resetCounters();
    writeFileSync(`${dir}/cpu.stat`, 'usage_usec 300000\n');
    writeFileSync(`${dir}/memory.events`, 'oom_kill 1\n');
    writeFileSync(`${dir}/pids.events`, 'max 9\n');
    const after = cg.usage();
    expect(after.cpuTimeMs).toBe(50);
    expect(after.oomKills).toBe(0);
    expect(after.pidsLimitHits).toBe(2);
  });

  it('kills through cgroup.kill and removes the folder', async () => {
    const cg = backend.create('sbx_three', { memoryBytes: 64 << 20, pids: 32 });
    const dir = `${root}/kiln/sbx_three`;
    writeFileSync(`${dir}/cgroup.procs`, '');
    writeFileSync(`${dir}/cgroup.kill`, '');
    cg.killAll();
    expect(readFileSync(`${dir}/cgroup.kill`, 'utf8')).toBe('1');
    // A real cgroup folder's files vanish with rmdir; the fake one's must be emptied first.
    for (const f of ['memory.max', 'memory.swap.max', 'pids.max', 'cpu.max', 'cgroup.procs', 'cgroup.kill']) rmSync(`${dir}/${f}`);
    await cg.remove();
    expect(existsSync(dir)).toBe(false);
  });
});
