import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { nativeHelperPath } from '../native-paths.js';
import { waitFor } from '../test-support.js';
import { describe, expect, it } from 'vitest';
import { detectCgroupBackend } from './index.js';

// The real cgroup v1 hierarchies of this machine.
const backend = detectCgroupBackend();
const onV1 = backend.version === 1;

describe.runIf(onV1)('cgroup v1 backend (real)', () => {
  it('creates a fresh cgroup with memory+swap, pids and cpu limits', async () => {
    const name = `test_${process.pid}_${Date.now()}`;
    const cg = backend.create(name, { memoryBytes: 96 << 20, pids: 20, cpuPercent: 50 });
    expect(readFileSync(`/sys/fs/cgroup/memory/kiln/${name}/memory.limit_in_bytes`, 'utf8').trim()).toBe(String(96 << 20));
    expect(readFileSync(`/sys/fs/cgroup/memory/kiln/${name}/memory.memsw.limit_in_bytes`, 'utf8').trim()).toBe(
      String(96 << 20),
    );
    expect(readFileSync(`/sys/fs/cgroup/pids/kiln/${name}/pids.max`, 'utf8').trim()).toBe('20');
    expect(readFileSync(`/sys/fs/cgroup/cpu/kiln/${name}/cpu.cfs_quota_us`, 'utf8').trim()).toBe('50000');
    await cg.remove();
    expect(existsSync(`/sys/fs/cgroup/memory/kiln/${name}`)).toBe(false);
  });

  it('accounts CPU, kills every member, resets counters, and removes itself while pids drain', async () => {
    const name = `test_${process.pid}_${Date.now()}_b`;
    const cg = backend.create(name, { memoryBytes: 96 << 20, pids: 20 });
    // kiln-launch joins the cgroup BEFORE it execs, so the busy child and grandchild are both inside.
    const uid = String(2_400_000 + (process.pid % 1000));
    const child = spawn(
      nativeHelperPath('kiln-launch'),
      [...cg.procsFiles.flatMap((f) => ['--cgroup', f]), '--uid', uid, '--gid', uid, '--', '/bin/sh', '-c', '(while :; do :; done) & while :; do :; done'],
      { stdio: 'ignore' },
    );
    try {
      await waitFor(() => cg.pids().length >= 2);
      await new Promise((r) => setTimeout(r, 150));
      const used = cg.usage();
      expect(used.cpuTimeMs).toBeGreaterThan(10);
      expect(cg.pids().length).toBe(2);
      cg.resetCounters();
      expect(cg.usage().cpuTimeMs).toBeLessThan(used.cpuTimeMs);
      const pids = cg.pids();
      cg.killAll();
      const exited = await new Promise<string | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
      expect(exited).toBe('SIGKILL');
      // The grandchild too: no process of the cgroup is left anywhere.
      expect(await waitFor(() => pids.every((p) => !existsSync(`/proc/${p}/stat`) || isZombie(p)))).toBe(true);
    } finally {
      cg.killAll();
      child.kill('SIGKILL');
      await cg.remove();
    }
    for (const c of ['memory', 'pids', 'cpu', 'cpuacct']) expect(existsSync(`/sys/fs/cgroup/${c}/kiln/${name}`)).toBe(false);
  });
});

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
