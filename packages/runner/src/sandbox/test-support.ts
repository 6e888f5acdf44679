import { readdirSync, readFileSync } from 'node:fs';
import type { Limits } from '@kiln/core';
import type { BubblewrapDriver } from './bubblewrap-driver.js';
import type { OneShotSpec, RunResult } from './driver.js';

/** Small limits for tests: every limit test can hit its limit fast. */
export const TEST_LIMITS: Limits = {
  cpu_time_ms: 5_000,
  wall_time_ms: 10_000,
  memory_bytes: 128 * 1024 * 1024,
  pids: 64,
  output_bytes: 1024 * 1024,
  file_size_bytes: 16 * 1024 * 1024,
  disk_bytes: 32 * 1024 * 1024,
  open_files: 256,
};

/** Runs a shell script in a sandbox with TEST_LIMITS overridden by `limits`. */
export function runSh(
  driver: BubblewrapDriver,
  script: string,
  limits: Partial<Limits> = {},
  extra: Partial<OneShotSpec> = {},
): Promise<RunResult> {
  return driver.run({ command: ['/bin/sh', '-c', script], limits: { ...TEST_LIMITS, ...limits }, ...extra });
}

/** Host pids whose command line contains `marker`, with their real uid. */
export function hostProcessesWith(marker: string): { pid: number; uid: number; cmdline: string }[] {
  const out: { pid: number; uid: number; cmdline: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (!cmdline.includes(marker)) continue;
      const uidLine = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'));
      out.push({ pid: Number(name), uid: Number(uidLine?.[1] ?? -1), cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out.filter((p) => p.pid !== process.pid);
}

/** Waits until `check` is true, polling every 10 ms, for at most `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}
