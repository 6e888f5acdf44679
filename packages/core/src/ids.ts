import { randomBytes } from 'node:crypto';

/** Every entity's id prefix (ARCHITECTURE.md §3). */
export const ID_PREFIXES = {
  tenant: 'ten',
  agent: 'agt',
  policy: 'pol',
  job: 'job',
  session: 'ses',
  session_step: 'stp',
  artifact: 'art',
  workflow: 'wf',
  workflow_step: 'wfs',
  service: 'svc',
  service_token: 'stk',
  runner: 'run',
  sandbox: 'sbx',
  audit_event: 'evt',
  key: 'key',
  lease: 'lse',
  upload: 'upl',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

// Crockford base32: sortable as text, no ambiguous letters.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

let lastTimeMs = -1;
let lastRandom: Uint8Array = new Uint8Array(10);

function encode(bytes: Uint8Array, chars: number): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out.slice(0, chars);
}

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}

/**
 * A prefixed, time-sortable id (`job_01hx…`): 10 chars of milliseconds then 16 of randomness.
 * Within one millisecond the random part is incremented, so ids made by one process stay ordered.
 */
export function newId(kind: IdKind, nowMs: number = Date.now()): string {
  let random: Uint8Array;
  if (nowMs === lastTimeMs) {
    random = Uint8Array.from(lastRandom);
    for (let i = random.length - 1; i >= 0; i--) {
      if (random[i]! < 255) {
        random[i]! += 1;
        break;
      }
      random[i] = 0;
    }
  } else {
    random = randomBytes(10);
    lastTimeMs = nowMs;
  }
  lastRandom = random;
  return `${ID_PREFIXES[kind]}_${encodeTime(nowMs)}${encode(random, 16)}`;
}

const ID_BODY = /^[0-9a-hjkmnp-tv-z]{26}$/;

/** True when `value` looks like an id of `kind` (used to answer 404 early on garbage ids). */
export function isId(kind: IdKind, value: string): boolean {
  const prefix = `${ID_PREFIXES[kind]}_`;
  return value.startsWith(prefix) && ID_BODY.test(value.slice(prefix.length));
}
