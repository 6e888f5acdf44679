import { describe, expect, it } from 'vitest';
import { decideVerdict, decodeExit, type RunEvidence } from './verdict.js';

const base: RunEvidence = {
  canceled: false,
  outputExceeded: false,
  oomKills: 0,
  wallTimeExceeded: false,
  cpuTimeExceeded: false,
  compileFailed: false,
  exit: { code: 0, signal: null },
};

describe('verdicts from evidence', () => {
  it('decodes bubblewrap\'s 128+N exit codes back into signals', () => {
    expect(decodeExit(152, null)).toEqual({ code: null, signal: 'SIGXCPU' });
    expect(decodeExit(153, null)).toEqual({ code: null, signal: 'SIGXFSZ' });
    expect(decodeExit(137, null)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(decodeExit(3, null)).toEqual({ code: 3, signal: null });
    expect(decodeExit(null, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(decodeExit(255, null)).toEqual({ code: 255, signal: null });
  });

  it('names the most specific cause first', () => {
    expect(decideVerdict(base)).toBe('ok');
    expect(decideVerdict({ ...base, exit: { code: 1, signal: null } })).toBe('runtime_error');
    expect(decideVerdict({ ...base, exit: { code: null, signal: 'SIGSEGV' } })).toBe('runtime_error');
    expect(decideVerdict({ ...base, exit: { code: null, signal: 'SIGXCPU' } })).toBe('time_limit');
    expect(decideVerdict({ ...base, exit: { code: null, signal: 'SIGXFSZ' } })).toBe('file_size_limit');
    expect(decideVerdict({ ...base, compileFailed: true, exit: { code: 1, signal: null } })).toBe('compile_error');
    const killed = { ...base, exit: { code: null, signal: 'SIGKILL' } };
    expect(decideVerdict({ ...killed, oomKills: 1 })).toBe('memory_limit');
    expect(decideVerdict({ ...killed, wallTimeExceeded: true })).toBe('time_limit');
    expect(decideVerdict({ ...killed, cpuTimeExceeded: true })).toBe('time_limit');
    expect(decideVerdict({ ...killed, outputExceeded: true, wallTimeExceeded: true })).toBe('output_limit');
    expect(decideVerdict({ ...killed, setupError: 'bwrap failed' })).toBe('system_error');
    expect(decideVerdict({ ...killed, canceled: true, oomKills: 1 })).toBe('canceled');
  });
});
