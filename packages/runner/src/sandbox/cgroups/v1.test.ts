import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { detectCgroupBackend } from './index.js';

// The real cgroup v1 hierarchies of this machine.
const backend = detectCgroupBackend();
const onV1 = backend.version === 1;

describe.runIf(onV1)('cgroup v1 backend (real)', () => {
  it('creates a fresh cgroup with memory+swap, pids and cpu limits', async () => {
    const name = `test_${process.pid}_${Date.now()}`;
    const cg = backend.create(name, { memoryBytes: 96 << 20, pids: 20, cpuPercent: 50 });
    const { readFileSync } = await import('node:fs');
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
    // A busy child joined to the cgroup (as kiln-launch would do) plus a grandchild.
    const child = spawn('sh', ['-c', 'echo $$ > /dev/null; (while :; do :; done) & while :; do :; done'], { stdio: 'ignore' });
    for (const f of cg.procsFiles) writeFileSync(f, String(child.pid));
    // Now fork the grandchild inside: the loop above already runs; give it CPU time.
    await new Promise((r) => setTimeout(r, 150));
    const used = cg.usage();
    expect(used.cpuTimeMs).toBeGreaterThan(10);
    expect(cg.pids().length).toBeGreaterThanOrEqual(1);
    cg.resetCounters();
    expect(cg.usage().cpuTimeMs).toBeLessThan(used.cpuTimeMs);
    cg.killAll();
    const exited = await new Promise<string | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    expect(exited).toBe('SIGKILL');
    await cg.remove();
    for (const c of ['memory', 'pids', 'cpu', 'cpuacct']) expect(existsSync(`/sys/fs/cgroup/${c}/kiln/${name}`)).toBe(false);
  });
});
