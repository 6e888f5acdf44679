import type { Readable } from 'node:stream';

/** `sha256:<64 hex>`: how kiln names a checksum everywhere (API, database, headers). */
export type Checksum = `sha256:${string}`;

/** Where a blob landed and what it is. */
export interface StoredBlob {
  storage_uri: string;
  checksum: Checksum;
  size_bytes: number;
}

export interface PutOptions {
  /** Refuse (ARTIFACT_REJECTED) once more than this many bytes arrive; nothing is stored. */
  maxBytes?: number;
  /** When given, the content must hash to this or nothing is stored (VALIDATION_FAILED). */
  expectedChecksum?: string;
  /**
   * Called once the content is hashed and before it becomes visible in the store; if it throws, nothing
   * is stored. Lets the caller name the blob (so the collector sees it in use) before it can be relied on.
   */
  beforeStore?: (blob: { checksum: Checksum; size_bytes: number }) => Promise<void>;
}

/**
 * Where artifact bytes live. Content-addressed by SHA-256: the same bytes are stored once, and every read
 * is checked against the checksum in its address, so silent corruption surfaces as an error, not as data.
 */
export interface ArtifactStore {
  readonly kind: 'fs' | 's3';
  put(source: Buffer | Readable, options?: PutOptions): Promise<StoredBlob>;
  /** A stream of the content; it errors at the end if the bytes do not match their checksum. */
  open(storageUri: string): Promise<Readable>;
  exists(storageUri: string): Promise<boolean>;
  /** The stored size in bytes, or undefined when the content is not in the store. */
  sizeOf(storageUri: string): Promise<number | undefined>;
  /** The URI the content with this checksum has in this store (stored or not). */
  uriOf(checksum: Checksum): string;
  delete(storageUri: string): Promise<void>;
  close(): Promise<void>;
}
