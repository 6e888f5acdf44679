import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API key format: `kiln_<kind>_<key id>_<secret>`, e.g. `kiln_tenant_key_01hx…_9f3c…`. The id makes lookup
 * one indexed read; only the SHA-256 of the 256-bit secret is stored, and compared in constant time.
 */
const KEY_PATTERN = /^kiln_(tenant|agent)_(key_[0-9a-hjkmnp-tv-z]{26})_([0-9a-f]{64})$/;

export interface ParsedKey {
  kind: 'tenant' | 'agent';
  keyId: string;
  secret: string;
}

export function parseApiKey(value: string): ParsedKey | undefined {
  const match = KEY_PATTERN.exec(value);
  if (!match) return undefined;
  return { kind: match[1] as ParsedKey['kind'], keyId: match[2]!, secret: match[3]! };
}

export function newSecret(): string {
  return randomBytes(32).toString('hex');
}

export function formatApiKey(kind: 'tenant' | 'agent', keyId: string, secret: string): string {
  return `kiln_${kind}_${keyId}_${secret}`;
}

/** A fresh operator key, used when none is configured. */
export function newOperatorKey(): string {
  return `kiln_operator_${newSecret()}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex SHA-256 digests (both always 32 bytes). */
export function digestsEqual(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  return a.length === 32 && b.length === 32 && timingSafeEqual(a, b);
}

/** Constant-time comparison of a presented secret against a configured one (operator key, runner token). */
export function secretMatches(presented: string, configured: string): boolean {
  return digestsEqual(hashSecret(presented), hashSecret(configured));
}

/**
 * A runner's own credential: `kiln_runner_<runner id>_<secret>`. Like API keys, the id makes lookup one
 * indexed read and only the SHA-256 of the secret is stored.
 */
const RUNNER_CREDENTIAL_PATTERN = /^kiln_runner_(run_[0-9a-hjkmnp-tv-z]{26})_([0-9a-f]{64})$/;

export function parseRunnerCredential(value: string): { runnerId: string; secret: string } | undefined {
  const match = RUNNER_CREDENTIAL_PATTERN.exec(value);
  return match ? { runnerId: match[1]!, secret: match[2]! } : undefined;
}

export function formatRunnerCredential(runnerId: string, secret: string): string {
  return `kiln_runner_${runnerId}_${secret}`;
}
