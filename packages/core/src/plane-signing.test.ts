import { describe, expect, it } from 'vitest';
import { NonceCache } from './plane-signing.js';

describe('NonceCache', () => {
  it('refuses a nonce seen within the window and forgets old ones', () => {
    const cache = new NonceCache(10);
    expect(cache.admit('a'.repeat(32), 1000, 1000, 100)).toBe(true);
    expect(cache.admit('a'.repeat(32), 1000, 1050, 100)).toBe(false);
    expect(cache.admit('b'.repeat(32), 1300, 1300, 100)).toBe(true);
    expect(cache.size).toBe(1);
  });

  it('stays bounded under a flood, and what it forgot cannot be replayed', () => {
    const cache = new NonceCache(100);
    for (let i = 0; i < 1000; i++) expect(cache.admit(`n${i}`, 5000 + i, 5000 + i, 60_000)).toBe(true);
    expect(cache.size).toBeLessThanOrEqual(100);
    // n0 was forgotten, but its timestamp is at or below the floor: refused.
    expect(cache.admit('n0', 5000, 6000, 60_000)).toBe(false);
  });
});
