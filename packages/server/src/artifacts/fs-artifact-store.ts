import { constants } from 'node:fs';
import { link, lstat, mkdir, open, rm, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { KilnError } from '@kiln/core';
import type { ArtifactStore, Checksum, PutOptions, StoredBlob } from './artifact-store.js';
import { checksumOfKey, contentKey, spool, verifying } from './content.js';

/** Artifacts as files under one root folder on the local disk (`file://` URIs); the default driver. */
export class FsArtifactStore implements ArtifactStore {
  readonly kind = 'fs' as const;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  async put(source: Buffer | Readable, options: PutOptions = {}): Promise<StoredBlob> {
    const spooled = await spool(source, join(this.root, 'tmp'), options);
    const target = join(this.root, contentKey(spooled.checksum));
    try {
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      // link() is atomic and refuses to replace: a blob already there has the same bytes by construction.
      await link(spooled.path, target).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      const fd = await open(dirname(target), 'r');
      await fd.sync().finally(() => fd.close());
    } finally {
      await unlink(spooled.path).catch(() => {});
    }
    return { storage_uri: this.uriOf(spooled.checksum), checksum: spooled.checksum, size_bytes: spooled.size_bytes };
  }

  async open(storageUri: string): Promise<Readable> {
    const { path, checksum } = this.locate(storageUri);
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new KilnError('NOT_FOUND', 'the artifact content is missing from the store');
      throw err;
    });
    return handle.createReadStream().pipe(verifying(checksum));
  }

  uriOf(checksum: Checksum): string {
    return pathToFileURL(join(this.root, contentKey(checksum))).href;
  }

  async exists(storageUri: string): Promise<boolean> {
    return (await this.sizeOf(storageUri)) !== undefined;
  }

  async sizeOf(storageUri: string): Promise<number | undefined> {
    const { path } = this.locate(storageUri);
    return lstat(path).then(
      (st) => (st.isFile() ? st.size : undefined),
      () => undefined,
    );
  }

  async delete(storageUri: string): Promise<void> {
    await rm(this.locate(storageUri).path, { force: true });
  }

  async close(): Promise<void> {}

  /** Maps a URI back to a path, refusing anything outside the root or not content-addressed. */
  private locate(storageUri: string) {
    let path: string;
    try {
      path = resolve(fileURLToPath(storageUri));
    } catch {
      throw new KilnError('INTERNAL', `not a file:// artifact URI: ${storageUri}`);
    }
    const checksum = checksumOfKey(path);
    if (!path.startsWith(this.root + sep) || checksum === undefined || !path.endsWith(contentKey(checksum))) {
      throw new KilnError('INTERNAL', `artifact URI outside the store: ${storageUri}`);
    }
    return { path, checksum };
  }
}
