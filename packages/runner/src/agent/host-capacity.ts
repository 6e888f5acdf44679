import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { Limits } from '@kiln/core';

/**
 * What this node can honour, measured once at start. A job asking for more than the node could ever give
 * is refused with the reason (never silently clamped: a job that ran with less than it was promised would
 * end as a misleading `memory_limit`); the memory of running jobs is accounted against the budget so the
 * node never takes more work than its RAM holds (MemoryLedger).
 */
export interface HostCapacity {
  /** Memory all sandboxes together may hold: their cgroup limits, which also cover their tmpfs workspaces. */
  memoryBudgetBytes: number;
  /** Where the budget came from, for the start-up log. */
  memoryBudgetSource: string;
  /** The kernel's pid_max: more pids than this cannot exist on the host. */
  pidMax: number;
}

/** Share of the node's memory given to sandboxes by default; the rest is the runner's and the system's. */
export const DEFAULT_MEMORY_BUDGET_FRACTION = 0.9;

/** cgroup v1 reports "no limit" as a number near 2^63. */
const NO_LIMIT_ABOVE = 2 ** 62;

/**
 * The memory limit of the cgroup this process is in, if any (v2 `memory.max`, v1 `memory.limit_in_bytes`):
 * in a container the host's RAM is not what the runner may use (as Temporal's worker reads its own limit).
 */
export function ownCgroupMemoryLimitBytes(procSelfCgroup = '/proc/self/cgroup', cgroupRoot = '/sys/fs/cgroup'): number | undefined {
  let lines: string[];
  try {
    lines = readFileSync(procSelfCgroup, 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const candidates: string[] = [];
  for (const line of lines) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === '') candidates.push(`${cgroupRoot}${path}/memory.max`, `${cgroupRoot}/unified${path}/memory.max`);
    else if (controllers!.split(',').includes('memory')) candidates.push(`${cgroupRoot}/memory${path}/memory.limit_in_bytes`);
  }
  let limit: number | undefined;
  for (const file of candidates) {
    try {
      const text = readFileSync(file, 'utf8').trim();
      const value = Number(text);
      if (text !== 'max' && Number.isFinite(value) && value > 0 && value < NO_LIMIT_ABOVE) limit = Math.min(limit ?? value, value);
    } catch {
      // not this hierarchy
    }
  }
  return limit;
}

function readPidMax(): number {
  try {
    const n = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : 32_768;
  } catch {
    return 32_768;
  }
}

/** Measures the node; `memoryBudgetBytes` (KILN_RUNNER_MEMORY_BUDGET_BYTES) overrides the measured budget. */
export function detectHostCapacity(options: { memoryBudgetBytes?: number } = {}): HostCapacity {
  const pidMax = readPidMax();
  if (options.memoryBudgetBytes !== undefined) {
    return { memoryBudgetBytes: options.memoryBudgetBytes, memoryBudgetSource: 'KILN_RUNNER_MEMORY_BUDGET_BYTES', pidMax };
  }
  const ram = totalmem();
  const cgroup = ownCgroupMemoryLimitBytes();
  const base = cgroup !== undefined && cgroup < ram ? cgroup : ram;
  return {
    memoryBudgetBytes: Math.floor(base * DEFAULT_MEMORY_BUDGET_FRACTION),
    memoryBudgetSource: `${DEFAULT_MEMORY_BUDGET_FRACTION * 100}% of ${cgroup !== undefined && cgroup < ram ? "the runner's cgroup memory limit" : 'the host RAM'}`,
    pidMax,
  };
}

/** `68719476736` → `64 GiB`, `1610612736` → `1.5 GiB`: sizes a person reads in a refusal. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : Number(value.toFixed(1))} ${units[unit]}`;
}

/**
 * Why this node cannot run a job with `limits` at all, or undefined when it can. The workspace (disk_bytes)
 * is a tmpfs held in memory, so its ceiling is the memory budget too, not the free space of a disk.
 */
export function hostRefusal(limits: Pick<Limits, 'memory_bytes' | 'disk_bytes' | 'pids'>, host: HostCapacity): string | undefined {
  const budget = `this runner's memory budget of ${formatBytes(host.memoryBudgetBytes)} (${host.memoryBudgetSource})`;
  if (limits.memory_bytes > host.memoryBudgetBytes) {
    return `limits.memory_bytes ${formatBytes(limits.memory_bytes)} exceeds ${budget}`;
  }
  if (limits.disk_bytes > host.memoryBudgetBytes) {
    return `limits.disk_bytes ${formatBytes(limits.disk_bytes)} exceeds ${budget}: the workspace is a tmpfs held in memory`;
  }
  if (limits.pids > host.pidMax) {
    return `limits.pids ${limits.pids} exceeds this host's kernel.pid_max of ${host.pidMax}`;
  }
  return undefined;
}

/**
 * The memory promised to running sandboxes (their cgroup limits), against the node's budget. Jobs wait
 * for room in arrival order, so a large job is not starved by small ones that keep fitting before it.
 */
export class MemoryLedger {
  private committedBytes = 0;
  private readonly waiting: { bytes: number; admit: () => void }[] = [];

  constructor(readonly budgetBytes: number) {}

  get freeBytes(): number {
    return this.budgetBytes - this.committedBytes;
  }

  /** Free memory not yet promised to a job waiting for room: what new leases may count on. */
  get availableBytes(): number {
    return this.freeBytes - this.waiting.reduce((n, w) => n + w.bytes, 0);
  }

  /**
   * Resolves true once `bytes` are reserved for the caller (who must `release` them), or false if
   * `signal` aborts first. `bytes` must be within the budget (hostRefusal checks that first).
   */
  reserve(bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (this.waiting.length === 0 && bytes <= this.freeBytes) {
      this.committedBytes += bytes;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const entry = {
        bytes,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(true);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        this.admitWaiting();
        resolve(false);
      };
      if (signal?.aborted) return resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /**
   * Reserves `bytes` now if they are free and nobody waits ahead, else reserves nothing and answers false:
   * for work that is refused rather than queued (a session is created now or placed elsewhere).
   */
  tryReserve(bytes: number): boolean {
    if (bytes > this.availableBytes) return false;
    this.committedBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.committedBytes -= bytes;
    this.admitWaiting();
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0 && (this.waiting[0] as { bytes: number }).bytes <= this.freeBytes) {
      const next = this.waiting.shift()!;
      this.committedBytes += next.bytes;
      next.admit();
    }
  }
}
