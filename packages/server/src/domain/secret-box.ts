import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * A job's `secret_env` at rest: AES-256-GCM (node:crypto) under a key kept outside the database
 * (KILN_SECRETS_KEY or `<data dir>/secrets.key`). The job id is the additional authenticated data, so a
 * database writer cannot move one job's sealed values onto another job. Format: `v1.<iv>.<tag>.<data>`,
 * base64url parts.
 */
export const SECRETS_KEY_BYTES = 32;

export function sealSecretEnv(key: Buffer, jobId: string, values: Record<string, string>): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(jobId, 'utf8'));
  const data = Buffer.concat([cipher.update(JSON.stringify(values), 'utf8'), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), data].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

/** The values sealed for `jobId`; throws when the key is not the one that sealed them or the text was altered. */
export function openSecretEnv(key: Buffer, jobId: string, sealed: string): Record<string, string> {
  const [version, iv, tag, data] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || tag === undefined || data === undefined) throw new Error('sealed secret env has an unknown format');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(jobId, 'utf8'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  const text = Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
  return JSON.parse(text) as Record<string, string>;
}

/** Reads a configured key: 64 hex digits or base64 of 32 bytes. */
export function parseSecretsKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : Buffer.from(trimmed, 'base64');
  return key.length === SECRETS_KEY_BYTES ? key : undefined;
}
