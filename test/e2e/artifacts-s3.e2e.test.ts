import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, KilnSystem } from './support/kiln-system.js';

// The control plane configured for an S3-compatible artifact store (a real s3rver the test starts):
// a job's outputs land in the bucket and come back verified.
describe('artifacts in an S3-compatible bucket', () => {
  const s3dir = mkdtempSync(join(tmpdir(), 'kiln-s3rver-'));
  let s3rver: S3rver;
  let s3: S3Client;
  let kiln: KilnSystem;

  beforeAll(async () => {
    const port = await freePort();
    s3rver = new S3rver({ address: '127.0.0.1', port, silent: true, directory: s3dir });
    await s3rver.run();
    const endpoint = `http://127.0.0.1:${port}`;
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
    await s3.send(new CreateBucketCommand({ Bucket: 'kiln-e2e' }));
    kiln = new KilnSystem('sqlite', {
      KILN_ARTIFACTS_URL: 's3://kiln-e2e/artifacts',
      KILN_S3_ENDPOINT: endpoint,
      KILN_S3_ACCESS_KEY_ID: credentials.accessKeyId,
      KILN_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    });
    await kiln.startServer();
    await kiln.startRunner({ name: 's3-runner' });
  }, 120_000);

  afterAll(async () => {
    await kiln?.close();
    s3?.destroy();
    await s3rver?.close();
    rmSync(s3dir, { recursive: true, force: true });
  }, 60_000);

  it('stores job outputs in the bucket and serves them with their checksum', async () => {
    const { agentClient } = await kiln.newTenant();
    const job = await agentClient.jobs.createAndWait({
      language: 'python',
      code: 'import os\nos.makedirs("out", exist_ok=True)\nopen("out/data.bin", "wb").write(bytes(range(256)) * 512)\nprint("x" * 100000)',
    });
    expect(job.status).toBe('succeeded');
    const arts = (await agentClient.artifacts.list({ owner_type: 'job', owner_id: job.id })).items;
    expect(arts.map((a) => a.name).sort()).toEqual(['out/data.bin', 'stderr', 'stdout']);
    for (const art of arts) {
      // Where the bytes are is the operator's business only.
      expect(art.storage_uri).toBeUndefined();
      expect((await kiln.operator.artifacts.get(art.id)).storage_uri).toMatch(/^s3:\/\/kiln-e2e\/artifacts\/sha256\//);
      const { bytes, checksum } = await agentClient.artifacts.download(art.id);
      expect(checksum).toBe(art.checksum);
      expect(`sha256:${createHash('sha256').update(bytes).digest('hex')}`).toBe(art.checksum);
    }
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'kiln-e2e', Prefix: 'artifacts/' }));
    expect(listed.KeyCount).toBeGreaterThanOrEqual(3);
    // Nothing went to the local disk's artifact folder.
    expect(readdirSync(join(kiln.dir, 'server')).includes('artifacts')).toBe(false);
  }, 60_000);
});
