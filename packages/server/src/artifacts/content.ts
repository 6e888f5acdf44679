import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KilnError } from '@kiln/core';
import type { Checksum, PutOptions } from './artifact-store.js';

const CHECKSUM_PATTERN = /^sha256:[0-9a-f]{64}$/;

export function isChecksum(value: string): value is Checksum {
  return CHECKSUM_PATTERN.test(value);
}

export function sha256Checksum(content: Buffer): Checksum {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

/** The store-relative key of a content hash: `sha256/ab/abcd…` (fan-out keeps folders small). */
export function contentKey(checksum: Checksum): string {
  const hex = checksum.slice('sha256:'.length);
  return `sha256/${hex.slice(0, 2)}/${hex}`;
}

/** The checksum named by a content key's last segment, or undefined for a foreign key. */
export function checksumOfKey(key: string): Checksum | undefined {
  const hex = key.split('/').pop() ?? '';
  const checksum = `sha256:${hex}`;
  return isChecksum(checksum) ? checksum : undefined;
}

function tooLarge(maxBytes: number): KilnError {
  return new KilnError('ARTIFACT_REJECTED', `the artifact is larger than the limit of ${maxBytes} bytes`, {
    extra: { ceiling: maxBytes },
  });
}

export function checkExpected(actual: Checksum, options: PutOptions): void {
  if (options.expectedChecksum !== undefined && options.expectedChecksum !== actual) {
    throw new KilnError(
      'VALIDATION_FAILED',
      `the content hashes to ${actual}, not the expected ${options.expectedChecksum}`,
      { field: 'checksum' },
    );
  }
}

/** Counts and hashes bytes as they pass, refusing more than maxBytes. */
class MeteredHash extends Transform {
  readonly hash = createHash('sha256');
  sizeBytes = 0;
  constructor(private readonly maxBytes: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.sizeBytes += chunk.length;
    if (this.sizeBytes > this.maxBytes) return done(tooLarge(this.maxBytes));
    this.hash.update(chunk);
    done(null, chunk);
  }
}

export interface SpooledFile {
  path: string;
  checksum: Checksum;
  size_bytes: number;
}

/**
 * Streams `source` into a new file under `dir`, hashing as it goes, so a blob of any size is stored
 * without being held in memory. The caller moves or uploads the file and then removes it.
 */
export async function spool(source: Buffer | Readable, dir: string, options: PutOptions): Promise<SpooledFile> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `.spool-${randomBytes(8).toString('hex')}`);
  const meter = new MeteredHash(options.maxBytes ?? Number.MAX_SAFE_INTEGER);
  const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
  try {
    // flush: fsync before close, so a blob that is linked into place is on disk, not only in cache.
    await pipeline(input, meter, createWriteStream(path, { flags: 'wx', mode: 0o600, flush: true }));
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  const checksum: Checksum = `sha256:${meter.hash.digest('hex')}`;
  try {
    checkExpected(checksum, options);
    await options.beforeStore?.({ checksum, size_bytes: meter.sizeBytes });
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  return { path, checksum, size_bytes: meter.sizeBytes };
}

/** Passes bytes through and fails at the end when they do not hash to `expected`. */
export function verifying(expected: Checksum): Transform {
  const hash = createHash('sha256');
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== expected) {
        done(new KilnError('INTERNAL', `stored artifact is corrupt: expected ${expected}, read ${actual}`));
      } else done();
    },
  });
}
