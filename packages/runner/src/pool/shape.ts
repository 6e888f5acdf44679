import type { Limits } from '@kiln/core';

/**
 * What a sandbox is built with before anyone uses it: its limits (cgroup memory and pids, the workspace
 * tmpfs size, the rlimits, the per-command CPU, wall and output bounds) and its seccomp filter (loopback
 * sockets or none). Two requests with the same shape can take each other's pre-built sandboxes.
 */
export interface SandboxShape {
  limits: Limits;
  /** Loopback sockets allowed (sessions and services); one-shot jobs get no socket but Unix ones. */
  loopback: boolean;
}

const LIMIT_KEYS = [
  'cpu_time_ms',
  'wall_time_ms',
  'memory_bytes',
  'pids',
  'output_bytes',
  'file_size_bytes',
  'disk_bytes',
  'open_files',
] as const satisfies readonly (keyof Limits)[];

/** A stable key of the shape (the same limits in any key order give the same key). */
export function shapeKey(shape: SandboxShape): string {
  const parts = LIMIT_KEYS.map((k) => `${k}=${shape.limits[k] ?? ''}`);
  return `${shape.loopback ? 'loopback' : 'no-network'};${parts.join(';')}`;
}

/** A short, label-safe name of a shape for /metrics: its memory, pids, disk and network kind. */
export function shapeLabel(shape: SandboxShape): string {
  const mib = (b: number) => `${Math.round(b / (1024 * 1024))}Mi`;
  const l = shape.limits;
  return `${shape.loopback ? 'loopback' : 'none'}/mem=${mib(l.memory_bytes)}/pids=${l.pids}/disk=${mib(l.disk_bytes)}`;
}
