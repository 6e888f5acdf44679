/** A bucket's shape: it holds up to `burst` tokens and refills at `perSecond`. */
export interface BucketRate {
  perSecond: number;
  burst: number;
}

/** One call's answer: allowed, or refused with the seconds until a token is back. */
export type TakeResult =
  | { allowed: true }
  | {
      allowed: false;
      retryAfterSeconds: number;
      /** true for the first refusal since the key was last allowed (the one worth recording) */
      firstRefusal: boolean;
    };

interface Bucket {
  tokens: number;
  updatedMs: number;
  rate: BucketRate;
  refusing: boolean;
}

/**
 * Token buckets by key, in memory, bounded: a bucket that has refilled completely is the same as no
 * bucket, so idle ones are dropped on a sweep; past `maxBuckets` the least recently used go first.
 * Pure (time is passed in), so it is tested on fake time.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweepMs = -Infinity;

  constructor(
    private readonly options: { maxBuckets: number; sweepIntervalMs: number } = { maxBuckets: 100_000, sweepIntervalMs: 60_000 },
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  take(key: string, rate: BucketRate, nowMs: number): TakeResult {
    const bucket = this.buckets.get(key) ?? { tokens: rate.burst, updatedMs: nowMs, rate, refusing: false };
    this.buckets.delete(key); // re-inserted below: Map order is least recently used first
    refill(bucket, rate, nowMs);
    let result: TakeResult;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.refusing = false;
      result = { allowed: true };
    } else {
      result = {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate.perSecond)),
        firstRefusal: !bucket.refusing,
      };
      bucket.refusing = true;
    }
    this.buckets.set(key, bucket);
    this.bound(nowMs);
    return result;
  }

  private bound(nowMs: number): void {
    const overCap = this.buckets.size > this.options.maxBuckets;
    if (!overCap && nowMs - this.lastSweepMs < this.options.sweepIntervalMs) return;
    this.lastSweepMs = nowMs;
    for (const [key, bucket] of this.buckets) {
      refill(bucket, bucket.rate, nowMs);
      if (bucket.tokens >= bucket.rate.burst) this.buckets.delete(key);
    }
    if (!overCap) return;
    // Still too many busy keys: forget the least recently used (each gets a full bucket if it returns),
    // down to 90 % of the cap, so the next full sweep is that many new keys away (amortised O(1)).
    const target = Math.floor(this.options.maxBuckets * 0.9);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= target) break;
      this.buckets.delete(key);
    }
  }
}

function refill(bucket: Bucket, rate: BucketRate, nowMs: number): void {
  // A clock that steps back refills nothing rather than draining the bucket.
  const elapsedMs = Math.max(0, nowMs - bucket.updatedMs);
  bucket.tokens = Math.min(rate.burst, bucket.tokens + (elapsedMs / 1000) * rate.perSecond);
  bucket.updatedMs = Math.max(bucket.updatedMs, nowMs);
  bucket.rate = rate;
}
