import type { Readable } from 'node:stream';
import { KilnError, toRfc3339 } from '@kiln/core';
import type { Checksum } from '../artifacts/artifact-store.js';
import {
  blobReferenced,
  dropUpload,
  finishUpload,
  insertUpload,
  insertUploads,
  lockContent,
  lockTenantStorage,
  orphanUploads,
  type NewUpload,
} from '../store/artifact-storage.js';
import type { TxHandle } from '../store/store.js';
import type { JobDeps } from './job-deps.js';
import { effectiveQuota } from './quotas.js';

/**
 * Per-tenant artifact storage (issue 7, point 3): a quota on the bytes a tenant's artifacts hold, blob
 * uploads bounded by the room left, and blobs nothing names any more removed from the store.
 */

/** Storage bounds and retention, with units in every name. */
export interface StorageSettings {
  /** Artifacts older than this are deleted; 0 keeps them forever. @default 604800 (7 days) */
  artifactRetentionSeconds: number;
  /** Ended jobs older than this are deleted with their artifacts; 0 keeps them forever. @default 2592000 (30 days) */
  jobRetentionSeconds: number;
  /** Rows the retention sweeper deletes per kind and pass. @default 500 */
  retentionBatchSize: number;
  /** How often the retention sweeper runs. @default 60000 */
  retentionIntervalMs: number;
  /** An upload no completion can record any more is collected only after this long. @default 60000 */
  orphanUploadGraceMs: number;
}

export const DEFAULT_STORAGE_SETTINGS: StorageSettings = {
  artifactRetentionSeconds: 7 * 24 * 3600,
  jobRetentionSeconds: 30 * 24 * 3600,
  retentionBatchSize: 500,
  retentionIntervalMs: 60_000,
  orphanUploadGraceMs: 60_000,
};

/** The tenant's artifact storage quota: `artifact_storage_bytes` of its quota record (or the configured default). */
export async function tenantStorageQuotaBytes(deps: JobDeps, tx: TxHandle, tenantId: string): Promise<number> {
  return (await effectiveQuota(deps, tx, tenantId)).artifact_storage_bytes;
}

/** The reason a blob or artifact refused for the quota carries (in `rejected_artifacts` and errors). */
export function quotaReason(quotaBytes: number): string {
  return `over the tenant's artifact storage quota of ${quotaBytes} bytes (delete artifacts or jobs, or ask the operator for more)`;
}

function quotaRefusal(quotaBytes: number): KilnError {
  return new KilnError('ARTIFACT_REJECTED', `the blob is ${quotaReason(quotaBytes)}`, {
    extra: { reason: 'storage_quota', ceiling: quotaBytes },
  });
}

/** Room the tenant has left for new artifacts: the quota less what its rows and pending uploads hold. */
export async function storageRoomBytes(deps: JobDeps, tx: TxHandle, tenantId: string): Promise<{ quotaBytes: number; roomBytes: number; storedBytes: number }> {
  const quotaBytes = await tenantStorageQuotaBytes(deps, tx, tenantId);
  const { storedBytes, reservedBytes } = await lockTenantStorage(tx, tenantId);
  return { quotaBytes, storedBytes, roomBytes: quotaBytes - storedBytes - reservedBytes };
}

/**
 * Streams an uploaded blob into the store, bounded so the tenant's stored and pending bytes never pass
 * its quota: the room is reserved (the declared length, or all the room left up to `maxBytes`) before a
 * byte is written, and the upload is tracked until a completion records it or the collector removes it.
 */
export async function receiveUpload(
  deps: JobDeps,
  target: { tenantId: string; jobId: string; attempt: number },
  body: Readable,
  limits: { maxBytes: number; declaredBytes: number | undefined },
): Promise<{ checksum: Checksum; size_bytes: number }> {
  const nowMs = deps.clock.nowMs();
  let quotaBytes = 0;
  let boundBytes = limits.maxBytes;
  let uploadId: string;
  try {
    uploadId = await deps.store.transaction(async (tx) => {
      const room = await storageRoomBytes(deps, tx, target.tenantId);
      quotaBytes = room.quotaBytes;
      if (limits.declaredBytes !== undefined) {
        if (limits.declaredBytes > limits.maxBytes) {
          throw new KilnError('ARTIFACT_REJECTED', `the blob is larger than the limit of ${limits.maxBytes} bytes`, {
            extra: { ceiling: limits.maxBytes },
          });
        }
        boundBytes = limits.declaredBytes;
      }
      if (boundBytes > room.roomBytes) {
        if (limits.declaredBytes !== undefined || room.roomBytes <= 0) throw quotaRefusal(quotaBytes);
        boundBytes = room.roomBytes;
      }
      return insertUpload(tx, { ...target, checksum: null, sizeBytes: boundBytes }, nowMs);
    });
  } catch (err) {
    body.resume();
    throw err;
  }
  try {
    // The upload names its blob before the blob is linked into the store: a collector removing the same
    // content either ran before (and the link puts it back) or sees the name (and keeps it).
    const blob = await deps.artifacts.put(body, {
      maxBytes: boundBytes,
      beforeStore: (b) => deps.store.transaction((tx) => finishUpload(tx, uploadId, b.checksum, b.size_bytes)),
    });
    return { checksum: blob.checksum, size_bytes: blob.size_bytes };
  } catch (err) {
    await dropUpload(deps.store, uploadId);
    body.resume();
    // Cut short by the room left, not by the job's own limit: say so.
    if (err instanceof KilnError && err.code === 'ARTIFACT_REJECTED' && boundBytes < limits.maxBytes) throw quotaRefusal(quotaBytes);
    throw err;
  }
}

/**
 * Tracks the blobs that arrived inline in a completion report (one transaction for them all), before it is stored, so that if the
 * completion refuses it (policy, quota) the collector finds and removes it like any orphan upload.
 * Inline blobs are small and bounded by the body limit, so they reserve no room ahead.
 */
export async function trackInlineBlobs(deps: JobDeps, uploads: readonly NewUpload[]): Promise<void> {
  if (uploads.length === 0) return;
  await deps.store.transaction((tx) => insertUploads(tx, uploads, deps.clock.nowMs()));
}

/**
 * Removes a blob from the store when no artifact row and no upload names it any more. The check and the
 * removal happen under the content's lock, which every upload and inline blob also takes to name it.
 */
export async function collectBlob(deps: JobDeps, checksum: string): Promise<boolean> {
  return deps.store.transaction(async (tx) => {
    await lockContent(tx, checksum);
    if (await blobReferenced(tx, checksum)) return false;
    await deps.artifacts.delete(deps.artifacts.uriOf(checksum as Checksum));
    return true;
  });
}

export async function collectBlobs(deps: JobDeps, checksums: Iterable<string | null>): Promise<number> {
  let removed = 0;
  for (const checksum of new Set(checksums)) {
    if (checksum !== null && (await collectBlob(deps, checksum))) removed += 1;
  }
  return removed;
}

/**
 * Collects uploads no completion will record (lost attempts, refused artifacts, ended or deleted jobs)
 * and their blobs where nothing else names them. `jobId` narrows it to one job, with no grace period:
 * used right after that job's completion.
 */
export async function collectOrphanUploads(deps: JobDeps, options: { jobId?: string; limit?: number } = {}): Promise<number> {
  const nowMs = deps.clock.nowMs();
  const before = options.jobId !== undefined ? toRfc3339(nowMs + 1) : toRfc3339(nowMs - deps.storage.orphanUploadGraceMs);
  const orphans = await deps.store.transaction((tx) =>
    orphanUploads(tx, {
      before,
      limit: options.limit ?? deps.storage.retentionBatchSize,
      ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
    }),
  );
  await collectBlobs(deps, orphans.map((o) => o.checksum));
  return orphans.length;
}
