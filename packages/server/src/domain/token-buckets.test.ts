import { describe, expect, it } from 'vitest';
import { TokenBuckets } from './token-buckets.js';

const rate = { perSecond: 2, burst: 3 };

describe('TokenBuckets', () => {
  it('allows a burst, then refuses with the seconds until a token is back, and refills with time', () => {
    const buckets = new TokenBuckets();
    for (let i = 0; i < 3; i++) expect(buckets.take('k', rate, 0)).toEqual({ allowed: true });
    expect(buckets.take('k', rate, 0)).toEqual({ allowed: false, retryAfterSeconds: 1, firstRefusal: true });
    expect(buckets.take('k', rate, 100)).toMatchObject({ allowed: false, firstRefusal: false });
    expect(buckets.take('k', rate, 500)).toEqual({ allowed: true });
    expect(buckets.take('k', rate, 500)).toMatchObject({ allowed: false, firstRefusal: true });
    // Other keys are not touched; a slow rate waits longer.
    expect(buckets.take('other', rate, 500)).toEqual({ allowed: true });
    const slow = { perSecond: 0.1, burst: 1 };
    buckets.take('slow', slow, 0);
    expect(buckets.take('slow', slow, 0)).toMatchObject({ allowed: false, retryAfterSeconds: 10 });
  });

  it('a clock stepping back drains nothing and refills nothing', () => {
    const buckets = new TokenBuckets();
    buckets.take('k', rate, 10_000);
    buckets.take('k', rate, 10_000);
    buckets.take('k', rate, 10_000);
    expect(buckets.take('k', rate, 0).allowed).toBe(false);
    expect(buckets.take('k', rate, 10_500).allowed).toBe(true);
  });

  it('a lowered rate takes effect at once: the bucket never holds more than the new burst', () => {
    const buckets = new TokenBuckets();
    buckets.take('k', { perSecond: 100, burst: 400 }, 0);
    let allowed = 0;
    for (let i = 0; i < 10; i++) if (buckets.take('k', { perSecond: 1, burst: 2 }, 0).allowed) allowed++;
    expect(allowed).toBe(2);
  });

  it('stays bounded: idle buckets are swept, and past the cap the least recently used go', () => {
    const buckets = new TokenBuckets({ maxBuckets: 100, sweepIntervalMs: 1000 });
    for (let i = 0; i < 10_000; i++) buckets.take(`key-${i}`, rate, 0);
    expect(buckets.size).toBeLessThanOrEqual(100);
    // The most recent keys are the ones kept: key-9999 is still empty-ish.
    buckets.take('key-9999', rate, 0);
    buckets.take('key-9999', rate, 0);
    expect(buckets.take('key-9999', rate, 0).allowed).toBe(false);
    // Long after, a sweep drops every bucket that has refilled.
    buckets.take('late', rate, 60_000);
    expect(buckets.size).toBe(1);
  });
});
