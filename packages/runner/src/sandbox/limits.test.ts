import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { runSh } from './test-support.js';

const MiB = 1024 * 1024;
const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

const text = (b: Buffer) => b.toString('utf8');

describe('limits, each proven by an attack', () => {
  it('CPU time: a busy loop is stopped at the cgroup CPU limit → time_limit', async () => {
    const r = await runSh(driver, 'while :; do :; done', { cpu_time_ms: 200, wall_time_ms: 10_000 });
    expect(r.verdict).toBe('time_limit');
    expect(r.resource_usage.cpu_time_ms).toBeGreaterThanOrEqual(200);
    expect(r.exit_status.signal).toBe('SIGKILL');
  });

  it('CPU time: many processes share one budget (the cgroup counts them all)', async () => {
    const r = await runSh(driver, 'for i in 1 2 3 4; do (while :; do :; done) & done; wait', {
      cpu_time_ms: 300,
      wall_time_ms: 10_000,
    });
    expect(r.verdict).toBe('time_limit');
    expect(r.resource_usage.cpu_time_ms).toBeGreaterThanOrEqual(300);
  });

  it('wall time: sleep is killed at the wall limit, whole group included → time_limit', async () => {
    const r = await runSh(driver, '(sleep 60 &); setsid sleep 60 & sleep 60', { wall_time_ms: 300 });
    expect(r.verdict).toBe('time_limit');
    expect(r.resource_usage.wall_time_ms).toBeGreaterThanOrEqual(300);
  });

  it('memory (swap included): a memory bomb is OOM-killed → memory_limit', async () => {
    const r = await runSh(driver, "python3 -c 'x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))'", {
      memory_bytes: 64 * MiB,
    });
    expect(r.verdict).toBe('memory_limit');
    expect(r.resource_usage.memory_peak_bytes).toBeLessThanOrEqual(64 * MiB);
    expect(r.resource_usage.memory_peak_bytes).toBeGreaterThan(32 * MiB);
  });

  it('memory: tmpfs pages (/dev/shm) count against the sandbox memory', async () => {
    // `&&`: 'wrote' means the whole 100 MiB landed. The OOM killer may pick `head` and leave the shell
    // alive, so an unconditional echo could still run after the limit held.
    const r = await runSh(driver, 'head -c 100M /dev/zero > /dev/shm/fill && echo wrote', {
      memory_bytes: 48 * MiB,
      disk_bytes: 200 * MiB,
      file_size_bytes: 200 * MiB,
    });
    expect(text(r.stdout)).not.toContain('wrote');
    expect(r.verdict).toBe('memory_limit');
  });

  it('pids: a fork bomb is contained and the host stays fine', async () => {
    const r = await runSh(driver, 'bomb() { bomb | bomb & }; bomb; sleep 1; echo done', {
      pids: 32,
      wall_time_ms: 3_000,
    });
    expect(['ok', 'time_limit', 'runtime_error']).toContain(r.verdict);
    if (r.resource_usage.pids_peak !== undefined) expect(r.resource_usage.pids_peak).toBeLessThanOrEqual(32);
    // The host still forks happily.
    expect(spawnSync('true').status).toBe(0);
  });

  it('pids: a thread bomb stops at the pids limit', async () => {
    const r = await runSh(
      driver,
      `python3 -c '
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        n += 1
except RuntimeError:
    pass
print(n, flush=True)
import os; os._exit(0)'`,
      { pids: 24 },
    );
    expect(r.verdict).toBe('ok');
    const threads = Number(text(r.stdout).trim());
    expect(threads).toBeGreaterThan(5);
    expect(threads).toBeLessThan(24);
  });

  it('output: endless `yes` is cut at output_bytes and the group killed → output_limit', async () => {
    const r = await runSh(driver, 'yes', { output_bytes: 64 * 1024 });
    expect(r.verdict).toBe('output_limit');
    expect(r.stdout.length + r.stderr.length).toBe(64 * 1024);
    expect(r.output_truncated).toBe(true);
  });

  it('file size: writing past file_size_bytes raises SIGXFSZ → file_size_limit', async () => {
    const r = await runSh(driver, 'head -c 4M /dev/zero > /workspace/big', { file_size_bytes: 1 * MiB });
    expect(r.verdict).toBe('file_size_limit');
    expect(r.exit_status.signal).toBe('SIGXFSZ');
  });

  it('disk: filling /workspace and /tmp past disk_bytes fails the write, not the host', async () => {
    const r = await runSh(
      driver,
      [
        'head -c 24M /dev/zero > /workspace/fill 2>/dev/null || echo workspace-full',
        'head -c 24M /dev/zero > /tmp/fill 2>/dev/null || echo tmp-full',
        'du -sk /workspace/fill /tmp/fill',
      ].join('\n'),
      { disk_bytes: 16 * MiB, file_size_bytes: 64 * MiB, memory_bytes: 256 * MiB },
    );
    const out = text(r.stdout);
    expect(out).toContain('workspace-full');
    expect(out).toContain('tmp-full');
    const kib = [...out.matchAll(/^(\d+)\s/gm)].map((m) => Number(m[1]));
    expect(kib.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(16 * 1024);
  });

  it('disk: an inode flood stops at the cap', async () => {
    const r = await runSh(driver, 'i=0; while true 2>/dev/null >/tmp/f$i; do i=$((i+1)); done; echo $i', {
      disk_bytes: 1 * MiB,
      wall_time_ms: 10_000,
    });
    const files = Number(text(r.stdout).trim());
    expect(files).toBeGreaterThan(100);
    expect(files).toBeLessThan(2048);
  });

  it('open files: opening past open_files fails', async () => {
    const r = await runSh(
      driver,
      `python3 -c '
fs = []
try:
    while True: fs.append(open("/dev/null"))
except OSError as e:
    print(len(fs), e.errno)'`,
      { open_files: 32 },
    );
    const [count, errno] = text(r.stdout).trim().split(' ').map(Number);
    expect(count).toBeLessThan(32);
    expect(errno).toBe(24); // EMFILE
  });

  it('Node and Java size their heaps from the sandbox memory limit', async () => {
    const r = await runSh(
      driver,
      [
        'node -p "require(\'v8\').getHeapStatistics().heap_size_limit"',
        'cat > /tmp/M.java <<EOF\npublic class M { public static void main(String[] a) { System.out.println(Runtime.getRuntime().maxMemory()); } }\nEOF',
        'java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 /tmp/M.java',
      ].join('\n'),
      { memory_bytes: 256 * MiB, cpu_time_ms: 20_000, wall_time_ms: 30_000 },
    );
    const [nodeHeap, javaHeap] = text(r.stdout).trim().split('\n').map(Number);
    // Unconstrained on this 24 GiB host, Node picks about 4 GiB and Java about 6 GiB.
    expect(nodeHeap).toBeLessThanOrEqual(512 * MiB);
    expect(javaHeap).toBeLessThanOrEqual(256 * MiB);
  }, 60_000);
});
