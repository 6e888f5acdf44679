import { z } from 'zod';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Resource limits, with units in every name. The same names are used by policies (ceilings), job
 * requests (what a job asks for) and the sandbox engine (what it enforces).
 * Bounds keep a policy from asking for something absurd; they are not the defaults.
 */
export const LIMIT_BOUNDS = {
  cpu_time_ms: { min: 10, max: 60 * 60 * 1000 },
  wall_time_ms: { min: 10, max: 24 * 60 * 60 * 1000 },
  memory_bytes: { min: 8 * MiB, max: 64 * GiB },
  pids: { min: 1, max: 32768 },
  output_bytes: { min: 0, max: 1 * GiB },
  file_size_bytes: { min: 0, max: 16 * GiB },
  disk_bytes: { min: 1 * MiB, max: 64 * GiB },
  open_files: { min: 16, max: 20000 },
} as const;

export type LimitName = keyof typeof LIMIT_BOUNDS;

function bounded(name: LimitName) {
  const b = LIMIT_BOUNDS[name];
  return z.number().int().min(b.min).max(b.max);
}

export const limitsSchema = z.strictObject({
  cpu_time_ms: bounded('cpu_time_ms'),
  wall_time_ms: bounded('wall_time_ms'),
  memory_bytes: bounded('memory_bytes'),
  pids: bounded('pids'),
  output_bytes: bounded('output_bytes'),
  file_size_bytes: bounded('file_size_bytes'),
  disk_bytes: bounded('disk_bytes'),
  open_files: bounded('open_files').optional(),
});

export type Limits = z.infer<typeof limitsSchema>;

/** Limits a request asks for: any subset, each at or under the policy's ceiling. */
export const requestedLimitsSchema = limitsSchema.partial();
export type RequestedLimits = z.infer<typeof requestedLimitsSchema>;

/** The safe defaults of the `default` policy (ARCHITECTURE.md §4). */
export const DEFAULT_LIMITS: Required<Limits> = {
  cpu_time_ms: 10_000,
  wall_time_ms: 30_000,
  memory_bytes: 256 * MiB,
  pids: 64,
  output_bytes: 1 * MiB,
  file_size_bytes: 16 * MiB,
  disk_bytes: 256 * MiB,
  open_files: 256,
};
