import { constants } from 'node:os';
import type { ExitStatus, Verdict } from '@kiln/core';

/** Everything a run's verdict is decided from. */
export interface RunEvidence {
  canceled: boolean;
  /** Why the sandbox could not be started (launcher or bubblewrap set-up failure). */
  setupError?: string | undefined;
  outputExceeded: boolean;
  oomKills: number;
  wallTimeExceeded: boolean;
  cpuTimeExceeded: boolean;
  compileFailed: boolean;
  exit: ExitStatus;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, num]) => [num as number, name]),
);

/**
 * Turns how the sandbox process ended into `{code, signal}`. bubblewrap reports a payload killed by
 * signal N as exit status 128+N, so such codes are decoded back into the signal.
 */
export function decodeExit(code: number | null, signal: NodeJS.Signals | null): ExitStatus {
  if (signal) return { code: null, signal };
  if (code !== null && code > 128 && code < 128 + 65) {
    const name = SIGNAL_NAMES.get(code - 128);
    if (name) return { code: null, signal: name };
  }
  return { code, signal: null };
}

/**
 * The verdict from evidence, most specific cause first: an abort, a set-up failure, then the limits the
 * runner or the kernel enforced (output, memory via the OOM-kill counter, time via timers, the cgroup's
 * CPU time or SIGXCPU, file size via SIGXFSZ), then a failed compile step, then the exit status.
 */
export function decideVerdict(e: RunEvidence): Verdict {
  if (e.canceled) return 'canceled';
  if (e.setupError !== undefined) return 'system_error';
  if (e.outputExceeded) return 'output_limit';
  if (e.oomKills > 0) return 'memory_limit';
  if (e.wallTimeExceeded || e.cpuTimeExceeded || e.exit.signal === 'SIGXCPU') return 'time_limit';
  if (e.exit.signal === 'SIGXFSZ') return 'file_size_limit';
  if (e.compileFailed) return 'compile_error';
  if (e.exit.code === 0 && e.exit.signal === null) return 'ok';
  return 'runtime_error';
}
