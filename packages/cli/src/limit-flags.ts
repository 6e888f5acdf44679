import type { Command } from 'commander';
import { DEFAULT_LIMITS, KilnError, limitsSchema, type Limits } from '@kiln/core';
import { wholeNumber } from './context.js';

/** Flag name → limit name; every flag takes a whole number (`kiln exec` and `kiln run`). */
export const LIMIT_FLAGS = [
  ['--memory-bytes', 'memory_bytes'],
  ['--cpu-time-ms', 'cpu_time_ms'],
  ['--wall-time-ms', 'wall_time_ms'],
  ['--pids', 'pids'],
  ['--output-bytes', 'output_bytes'],
  ['--file-size-bytes', 'file_size_bytes'],
  ['--disk-bytes', 'disk_bytes'],
] as const;

type LimitName = (typeof LIMIT_FLAGS)[number][1];
export type LimitOption = 'memoryBytes' | 'cpuTimeMs' | 'wallTimeMs' | 'pids' | 'outputBytes' | 'fileSizeBytes' | 'diskBytes';
export type LimitFlags = Partial<Record<LimitOption, number>>;

const camel = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as LimitOption;

/** Adds the limit flags to `cmd`; `defaults` is what the help says a flag left out means. */
export function addLimitFlags(cmd: Command, defaults: 'default-policy' | 'policy'): Command {
  for (const [flag, name] of LIMIT_FLAGS) {
    const dflt = defaults === 'policy' ? "the policy's" : String(DEFAULT_LIMITS[name]);
    cmd.option(`${flag} <n>`, `limit ${name} (default ${dflt})`, wholeNumber);
  }
  return cmd;
}

/** Only the limits given as flags, by limit name. */
export function givenLimits(opts: LimitFlags): Partial<Record<LimitName, number>> {
  const limits: Partial<Record<LimitName, number>> = {};
  for (const [flag, name] of LIMIT_FLAGS) {
    const value = opts[camel(flag)];
    if (value !== undefined) limits[name] = value;
  }
  return limits;
}

/** The limits for a local run: the default policy's, overridden by flags, checked against the bounds. */
export function localLimits(opts: LimitFlags): Limits {
  const parsed = limitsSchema.safeParse({ ...DEFAULT_LIMITS, ...givenLimits(opts) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? '');
    const flag = LIMIT_FLAGS.find(([, n]) => n === name)?.[0] ?? name;
    throw new KilnError('VALIDATION_FAILED', `${flag}: ${issue?.message ?? 'invalid'}`, { field: name });
  }
  return parsed.data;
}
