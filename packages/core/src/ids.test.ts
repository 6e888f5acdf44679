import { describe, expect, it } from 'vitest';
import { isId, newId } from './ids.js';

describe('ids', () => {
  it('are prefixed and sort by creation time', () => {
    const a = newId('job', 1_000);
    const b = newId('job', 2_000);
    expect(a.startsWith('job_')).toBe(true);
    expect(a < b).toBe(true);
    expect(isId('job', a)).toBe(true);
    expect(isId('tenant', a)).toBe(false);
  });

  it('stay ordered and unique within one millisecond', () => {
    const ids = Array.from({ length: 1000 }, () => newId('evt', 5_000));
    expect(new Set(ids).size).toBe(1000);
    expect([...ids].sort()).toEqual(ids);
  });

  it('reject garbage', () => {
    expect(isId('job', 'job_../../etc')).toBe(false);
    expect(isId('job', '')).toBe(false);
  });
});
