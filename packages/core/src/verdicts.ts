import { z } from 'zod';

/** How a run ended, decided from evidence (OOM counter, signals, timers, byte counts). */
export const VERDICTS = [
  'ok',
  'compile_error',
  'runtime_error',
  'time_limit',
  'memory_limit',
  'output_limit',
  'file_size_limit',
  'canceled',
  'system_error',
] as const;

export const verdictSchema = z.enum(VERDICTS);
export type Verdict = z.infer<typeof verdictSchema>;

export const exitStatusSchema = z.object({
  code: z.number().int().nullable(),
  signal: z.string().nullable(),
});
export type ExitStatus = z.infer<typeof exitStatusSchema>;

export const resourceUsageSchema = z.object({
  cpu_time_ms: z.number().nonnegative(),
  wall_time_ms: z.number().nonnegative(),
  memory_peak_bytes: z.number().int().nonnegative(),
  pids_peak: z.number().int().nonnegative().optional(),
  output_bytes: z.number().int().nonnegative().optional(),
  /** Allowlist egress only: connections the proxy opened and refused, bytes out of and into the sandbox. */
  egress_connections: z.number().int().nonnegative().optional(),
  egress_denied: z.number().int().nonnegative().optional(),
  egress_bytes_sent: z.number().int().nonnegative().optional(),
  egress_bytes_received: z.number().int().nonnegative().optional(),
});
export type ResourceUsage = z.infer<typeof resourceUsageSchema>;
