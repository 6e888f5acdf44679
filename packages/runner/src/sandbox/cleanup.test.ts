import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { runtimeDir } from './runtime-dir.js';
import { hostProcessesWith, runSh } from './test-support.js';
import { UidPool } from './uid-pool.js';

const lockDir = mkdtempSync('/tmp/kiln-uids-');
// A pool of its own (a range no other test uses), so the test can see every lock it leaves.
const driver = new BubblewrapDriver({ uids: new UidPool({ firstUid: 2_100_000, count: 8, lockDir }) });
afterAll(async () => {
  await driver.drain();
  rmSync(lockDir, { recursive: true, force: true });
});

function traces(sandboxId: string): string[] {
  const found: string[] = [];
  for (const controller of readdirSync('/sys/fs/cgroup')) {
    const dir = `/sys/fs/cgroup/${controller}/kiln/${sandboxId}`;
    if (existsSync(dir)) found.push(dir);
  }
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) if (line.includes(sandboxId)) found.push(line);
  if (existsSync(`${runtimeDir()}/workspaces/${sandboxId}`)) found.push('workspace folder');
  return found;
}

describe('cleanup after one-shot runs', () => {
  it('leaves no process (daemons and setsid orphans included), cgroup, mount, folder or uid', async () => {
    const marker = `kiln-cleanup-${process.pid}-${Date.now()}`;
    const results = await Promise.all(
      ['ok', 'killed'].map((kind) =>
        runSh(
          driver,
          `setsid sh -c 'sleep 60; : ${marker}' & nohup sh -c 'sleep 60; : ${marker}' >/dev/null 2>&1 & ` +
            `(trap "" HUP TERM; sleep 60; : ${marker}) & echo started; ${kind === 'ok' ? 'exit 0' : 'sleep 60'}`,
          { wall_time_ms: 2_000 },
        ),
      ),
    );
    expect(results.map((r) => r.verdict)).toEqual(['ok', 'time_limit']);
    // The result comes back before the background cleanup; processes are gone already.
    expect(hostProcessesWith(marker)).toEqual([]);
    await driver.drain();
    for (const r of results) expect(traces(r.sandbox_id as string)).toEqual([]);
    expect(readdirSync(lockDir)).toEqual([]);
  });

  it('cleans up after a run canceled through its AbortSignal', async () => {
    const controller = new AbortController();
    const marker = `kiln-cancel-${process.pid}-${Date.now()}`;
    const running = runSh(driver, `sleep 60; : ${marker}`, {}, { signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    const r = await running;
    expect(r.verdict).toBe('canceled');
    expect(hostProcessesWith(marker)).toEqual([]);
    await driver.drain();
    expect(traces(r.sandbox_id as string)).toEqual([]);
    expect(readdirSync(lockDir)).toEqual([]);
  });

  it('cleans up after a set-up failure (a command that does not exist)', async () => {
    const r = await driver.run({
      command: ['/no/such/program'],
      limits: { cpu_time_ms: 1000, wall_time_ms: 2000, memory_bytes: 64 << 20, pids: 16, output_bytes: 1024, file_size_bytes: 1024, disk_bytes: 1 << 20 },
    });
    expect(r.verdict).toBe('system_error');
    expect(r.error).toMatch(/no\/such\/program/);
    await driver.drain();
    expect(traces(r.sandbox_id as string)).toEqual([]);
    expect(readdirSync(lockDir)).toEqual([]);
  });
});
