import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Requests from the control plane to a runner (ARCHITECTURE.md §7) are signed: HMAC-SHA256 over the
 * method, the path with its query, the SHA-256 of the body, a timestamp and a nonce, under a key only
 * that runner and the control plane hold. The key is derived from the runner's own credential (issued
 * at registration), so the runner needs nothing new on disk and a re-issued credential retires the key.
 */

export const SIGNATURE_HEADERS = {
  timestamp: 'x-kiln-timestamp',
  nonce: 'x-kiln-nonce',
  bodySha256: 'x-kiln-body-sha256',
  signature: 'x-kiln-signature',
} as const;

/** A body that streams (a file upload) is not hashed ahead; its bytes are bounded by the runner instead. */
export const UNSIGNED_BODY = 'streamed';

/** How far a request's timestamp may be from the runner's clock. @default 30 000 */
export const SIGNATURE_WINDOW_MS = 30_000;

/** The signing key of a runner: derived from its credential, never sent on the wire. */
export function planeSigningKey(runnerCredential: string): string {
  return createHmac('sha256', runnerCredential).update('kiln control-plane signing v1').digest('hex');
}

export function sha256Hex(body: Buffer | string): string {
  return createHash('sha256').update(body).digest('hex');
}

function canonical(method: string, pathWithQuery: string, bodySha256: string, timestampMs: number, nonce: string): string {
  return [method.toUpperCase(), pathWithQuery, bodySha256, String(timestampMs), nonce].join('\n');
}

/** The headers that sign one request. */
export function signPlaneRequest(
  key: string,
  request: { method: string; pathWithQuery: string; body?: Buffer | string | undefined; streamed?: boolean },
  nowMs: number,
): Record<string, string> {
  const bodySha256 = request.streamed ? UNSIGNED_BODY : sha256Hex(request.body ?? '');
  const nonce = randomBytes(16).toString('hex');
  const signature = createHmac('sha256', key)
    .update(canonical(request.method, request.pathWithQuery, bodySha256, nowMs, nonce))
    .digest('hex');
  return {
    [SIGNATURE_HEADERS.timestamp]: String(nowMs),
    [SIGNATURE_HEADERS.nonce]: nonce,
    [SIGNATURE_HEADERS.bodySha256]: bodySha256,
    [SIGNATURE_HEADERS.signature]: signature,
  };
}

/**
 * Nonces seen within the window. Bounded: past `maxEntries` the oldest are forgotten, and a request
 * older than the oldest remembered nonce is refused, so forgetting never lets a replay through.
 */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  /** Requests stamped at or before this are refused: their nonce may have been forgotten. */
  private floorMs = 0;

  constructor(private readonly maxEntries = 100_000) {}

  /** Records the nonce; false when it was seen (a replay) or is too old to check. */
  admit(nonce: string, timestampMs: number, nowMs: number, windowMs: number): boolean {
    for (const [old, at] of this.seen) {
      if (at >= nowMs - windowMs) break;
      this.seen.delete(old);
    }
    if (timestampMs <= this.floorMs || this.seen.has(nonce)) return false;
    while (this.seen.size >= this.maxEntries) {
      const [oldest, at] = this.seen.entries().next().value as [string, number];
      this.seen.delete(oldest);
      this.floorMs = Math.max(this.floorMs, at);
      if (timestampMs <= this.floorMs) return false;
    }
    // Kept in arrival order; expiry above uses arrival time, a bound on the timestamp window.
    this.seen.set(nonce, nowMs);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/** Checks a request's signature, freshness and nonce; the body hash is checked by the caller for bodies it reads. */
export function verifyPlaneRequest(
  key: string,
  request: { method: string; pathWithQuery: string; headers: Record<string, string | string[] | undefined> },
  nonces: NonceCache,
  nowMs: number,
  windowMs = SIGNATURE_WINDOW_MS,
): SignatureCheck {
  const header = (name: string) => {
    const v = request.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const timestamp = header(SIGNATURE_HEADERS.timestamp);
  const nonce = header(SIGNATURE_HEADERS.nonce);
  const bodySha256 = header(SIGNATURE_HEADERS.bodySha256);
  const signature = header(SIGNATURE_HEADERS.signature);
  if (!timestamp || !nonce || !bodySha256 || !signature) return { ok: false, reason: 'the request is not signed' };
  if (!/^\d{1,16}$/.test(timestamp) || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[0-9a-f]{64}$/.test(signature)) {
    return { ok: false, reason: 'malformed signature headers' };
  }
  if (bodySha256 !== UNSIGNED_BODY && !/^[0-9a-f]{64}$/.test(bodySha256)) return { ok: false, reason: 'malformed body hash' };
  const timestampMs = Number(timestamp);
  const expected = createHmac('sha256', key)
    .update(canonical(request.method, request.pathWithQuery, bodySha256, timestampMs, nonce))
    .digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return { ok: false, reason: 'bad signature' };
  if (Math.abs(nowMs - timestampMs) > windowMs) return { ok: false, reason: 'the request is stale' };
  if (!nonces.admit(nonce, timestampMs, nowMs, windowMs)) return { ok: false, reason: 'the request was replayed' };
  return { ok: true };
}
