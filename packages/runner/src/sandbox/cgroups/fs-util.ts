import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';

/** Small synchronous helpers: cgroup files are tiny and in-kernel, so sync I/O is the fast path. */

export function writeValue(path: string, value: string | number): void {
  writeFileSync(path, String(value));
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

export function readNumber(path: string): number {
  const n = Number(readText(path).trim());
  return Number.isFinite(n) ? n : 0;
}

/** Reads `key value` lines (memory.oom_control, pids.events, cpu.stat) into a map. */
export function readKeyed(path: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(path)) return out;
  for (const line of readText(path).split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) out.set(key, Number(value));
  }
  return out;
}

export function readPids(procsFile: string): number[] {
  try {
    return readText(procsFile)
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(Number);
  } catch {
    return [];
  }
}

export function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * SIGKILLs every member, a few rounds: whatever forked while the list was read is caught by the next
 * round (a frozen or `cgroup.kill`ed group needs one; cgroup v1 has no kill file).
 */
export function killUntilEmpty(members: () => number[], rounds = 5): void {
  for (let round = 0; round < rounds; round++) {
    const pids = members();
    if (pids.length === 0) return;
    killPids(pids);
  }
}

export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true });
}

/** Removes the folders, deepest first, retrying on EBUSY with backoff while pids drain. */
export async function removeDirsWithRetry(dirs: string[], beforeEachTry: () => void, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  let delayMs = 20;
  let remaining = dirs.filter((d) => existsSync(d));
  while (remaining.length > 0) {
    beforeEachTry();
    remaining = remaining.filter((dir) => {
      try {
        rmdirSync(dir);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code !== 'ENOENT';
      }
    });
    if (remaining.length === 0) return;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`cgroup folders still busy after ${timeoutMs} ms: ${remaining.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, delayMs));
    delayMs = Math.min(delayMs * 2, 500);
  }
}
