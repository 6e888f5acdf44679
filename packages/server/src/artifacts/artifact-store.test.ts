import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import S3rver from 's3rver';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { KilnError } from '@kiln/core';
import { createArtifactStore, type ArtifactStore, sha256Checksum } from './index.js';

interface Harness {
  store: ArtifactStore;
  /** Flips a byte of the stored object, as disk rot or a tampering operator would. */
  corrupt(storageUri: string): Promise<void>;
  teardown(): Promise<void>;
}

async function fsHarness(): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-art-'));
  const store = createArtifactStore({ dataDir });
  return {
    store,
    corrupt: async (uri) => {
      const path = fileURLToPath(uri);
      const bytes = readFileSync(path);
      bytes[0] = bytes[0]! ^ 0xff;
      rmSync(path);
      writeFileSync(path, bytes);
    },
    teardown: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

async function s3Harness(): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir });
  const address = (await server.run()) as { address: string; port: number };
  const endpoint = `http://127.0.0.1:${address.port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
  await admin.send(new CreateBucketCommand({ Bucket: 'kiln-test' }));
  const store = createArtifactStore({ url: 's3://kiln-test/arts', dataDir: dir, s3: { endpoint, ...credentials } });
  return {
    store,
    corrupt: async (uri) => {
      // s3rver keeps each object as a file named `<key>._S3rver_object` under its directory.
      const key = uri.replace('s3://kiln-test/', '');
      const path = join(dir, 'kiln-test', `${key}._S3rver_object`);
      const bytes = readFileSync(path);
      bytes[0] = bytes[0]! ^ 0xff;
      writeFileSync(path, bytes);
    },
    teardown: async () => {
      admin.destroy();
      await store.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe.each([
  ['filesystem', fsHarness],
  ['s3', s3Harness],
])('ArtifactStore (%s)', (_name, makeHarness) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness();
  });
  afterAll(async () => {
    await h.teardown();
  });

  it('stores content under its SHA-256 and reads it back verified', async () => {
    const content = Buffer.from('hello, artifacts\n');
    const blob = await h.store.put(content);
    expect(blob.checksum).toBe(sha256Checksum(content));
    expect(blob.size_bytes).toBe(content.length);
    expect(blob.storage_uri).toContain(blob.checksum.slice('sha256:'.length));
    expect(await text(await h.store.open(blob.storage_uri))).toBe('hello, artifacts\n');
    expect(await h.store.exists(blob.storage_uri)).toBe(true);
  });

  it('streams large content without holding it and stores identical bytes once', async () => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const source = () => Readable.from((function* () { for (let i = 0; i < 64; i++) yield chunk; })());
    const a = await h.store.put(source());
    const b = await h.store.put(source());
    expect(a.size_bytes).toBe(4 * 1024 * 1024);
    expect(a).toEqual(b);
  });

  it('refuses content over maxBytes and stores nothing', async () => {
    const content = Buffer.alloc(1000, 1);
    const err = await h.store.put(content, { maxBytes: 999 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).code).toBe('ARTIFACT_REJECTED');
    const ok = await h.store.put(content, { maxBytes: 1000 });
    await h.store.delete(ok.storage_uri);
    expect(await h.store.exists(ok.storage_uri)).toBe(false);
  });

  it('refuses content that does not match the expected checksum', async () => {
    const err = await h.store
      .put(Buffer.from('abc'), { expectedChecksum: sha256Checksum(Buffer.from('abd')) })
      .catch((e: unknown) => e);
    expect((err as KilnError).code).toBe('VALIDATION_FAILED');
  });

  it('detects corrupted content on read instead of serving it', async () => {
    const blob = await h.store.put(Buffer.from('precious bytes'));
    await h.corrupt(blob.storage_uri);
    await expect(text(await h.store.open(blob.storage_uri))).rejects.toThrow(/corrupt/);
  });

  it('refuses URIs outside the store', async () => {
    await expect(h.store.open('file:///etc/passwd')).rejects.toThrow(/outside|not a/);
    await expect(h.store.open('s3://other-bucket/sha256/00/' + '0'.repeat(64))).rejects.toThrow(/outside|not a/);
  });
});

describe('FsArtifactStore', () => {
  it('leaves no spool files behind after success or refusal', async () => {
    const h = await fsHarness();
    const blob = await h.store.put(Buffer.from('x'));
    await h.store.put(Buffer.alloc(10), { maxBytes: 5 }).catch(() => {});
    const root = join(fileURLToPath(blob.storage_uri), '..', '..', '..', 'tmp');
    expect(readdirSync(root)).toEqual([]);
    await h.teardown();
  });
});
