import { join } from 'node:path';
import type { ArtifactStore } from './artifact-store.js';
import { FsArtifactStore } from './fs-artifact-store.js';
import { S3ArtifactStore, type S3ArtifactStoreOptions } from './s3-artifact-store.js';

export type { ArtifactStore, Checksum, PutOptions, StoredBlob } from './artifact-store.js';
export { isChecksum, sha256Checksum } from './content.js';
export { FsArtifactStore } from './fs-artifact-store.js';
export { S3ArtifactStore, type S3ArtifactStoreOptions } from './s3-artifact-store.js';

export interface ArtifactStoreConfig {
  /** `s3://bucket/prefix` for S3, a path or `file://` URL for the local disk. @default `<dataDir>/artifacts` */
  url?: string;
  dataDir: string;
  s3?: Omit<S3ArtifactStoreOptions, 'bucket' | 'prefix'>;
}

/** The store the configuration names: S3 for `s3://` URLs, the local disk otherwise. */
export function createArtifactStore(config: ArtifactStoreConfig): ArtifactStore {
  const url = config.url ?? join(config.dataDir, 'artifacts');
  const s3 = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (s3) {
    return new S3ArtifactStore({
      ...config.s3,
      spoolDir: config.s3?.spoolDir ?? join(config.dataDir, 'artifacts-spool'),
      bucket: s3[1]!,
      prefix: s3[2] ?? '',
    });
  }
  return new FsArtifactStore(url.startsWith('file://') ? new URL(url).pathname : url);
}
