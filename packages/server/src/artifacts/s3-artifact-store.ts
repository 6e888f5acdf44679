import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { KilnError } from '@kiln/core';
import type { ArtifactStore, Checksum, PutOptions, StoredBlob } from './artifact-store.js';
import { checksumOfKey, contentKey, spool, verifying } from './content.js';

export interface S3ArtifactStoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash. @default "" */
  prefix?: string;
  /** Any S3-compatible endpoint (MinIO, Ceph, R2…); omit for AWS itself. */
  endpoint?: string;
  /** @default "us-east-1" */
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style addressing, which most self-hosted S3 servers need. @default true when endpoint is set */
  forcePathStyle?: boolean;
  /** Where uploads are spooled while they are hashed. @default os.tmpdir() */
  spoolDir?: string;
}

/** Artifacts in an S3-compatible bucket (`s3://bucket/key` URIs). */
export class S3ArtifactStore implements ArtifactStore {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly spoolDir: string;

  constructor(options: S3ArtifactStoreOptions) {
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.spoolDir = options.spoolDir ?? join(tmpdir(), 'kiln-s3-spool');
    this.client = new S3Client({
      region: options.region ?? 'us-east-1',
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      ...(options.accessKeyId && options.secretAccessKey
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
      // Many S3-compatible servers reject the SDK's newer default integrity headers; we check SHA-256 ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async put(source: Buffer | Readable, options: PutOptions = {}): Promise<StoredBlob> {
    const spooled = await spool(source, this.spoolDir, options);
    const key = this.keyOf(contentKey(spooled.checksum));
    try {
      if ((await this.headSize(key)) === undefined) {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: createReadStream(spooled.path),
            ContentLength: spooled.size_bytes,
            ContentType: 'application/octet-stream',
          }),
        );
      }
    } finally {
      await rm(spooled.path, { force: true });
    }
    return { storage_uri: this.uriOf(spooled.checksum), checksum: spooled.checksum, size_bytes: spooled.size_bytes };
  }

  async open(storageUri: string): Promise<Readable> {
    const { key, checksum } = this.locate(storageUri);
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return (answer.Body as Readable).pipe(verifying(checksum));
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') {
        throw new KilnError('NOT_FOUND', 'the artifact content is missing from the store');
      }
      throw err;
    }
  }

  uriOf(checksum: Checksum): string {
    return `s3://${this.bucket}/${this.keyOf(contentKey(checksum))}`;
  }

  async exists(storageUri: string): Promise<boolean> {
    return (await this.sizeOf(storageUri)) !== undefined;
  }

  async sizeOf(storageUri: string): Promise<number | undefined> {
    return this.headSize(this.locate(storageUri).key);
  }

  async delete(storageUri: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.locate(storageUri).key }));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private keyOf(relative: string): string {
    return this.prefix ? `${this.prefix}/${relative}` : relative;
  }

  private async headSize(key: string): Promise<number | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) return undefined;
      throw err;
    }
  }

  private locate(storageUri: string) {
    const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(storageUri);
    const checksum = match ? checksumOfKey(match[2]!) : undefined;
    if (!match || match[1] !== this.bucket || checksum === undefined || match[2] !== this.keyOf(contentKey(checksum))) {
      throw new KilnError('INTERNAL', `artifact URI outside the store: ${storageUri}`);
    }
    return { key: match[2]!, checksum };
  }
}
