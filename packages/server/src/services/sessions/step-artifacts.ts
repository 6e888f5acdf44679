import { PassThrough } from 'node:stream';
import { INLINE_OUTPUT_MAX_BYTES, LIMIT_BOUNDS, newId, toRfc3339, type OutputRefs, type RejectedArtifact } from '@kiln/core';
import type { Checksum } from '../../artifacts/artifact-store.js';
import { sha256Checksum } from '../../artifacts/content.js';
import { addTenantArtifactBytes, insertUpload, releaseRecordedUploads } from '../../store/artifact-storage.js';
import type { TxHandle } from '../../store/store.js';
import { collectOrphanUploads, quotaReason, storageRoomBytes, trackInlineBlobs } from '../artifact-storage.js';
import type { JobDeps } from '../job-deps.js';

/**
 * A session step's artifacts (issue 8, point 3): its stdout and stderr, and the files it named in
 * `collect`, stored through the same content-addressed store, storage quota and retention as a job's,
 * owned by the `session_step`. Every blob is tracked as an upload of the step (blob_uploads, keyed by the
 * step's id) before it becomes visible in the store, so a crash before the step is recorded leaves an
 * orphan the upload collector removes, never a blob nothing names.
 */

/** A blob of the step and its name, once stored. */
export interface StepBlob {
  name: string;
  checksum: Checksum;
  size_bytes: number;
}

function trackAs(deps: JobDeps, tenantId: string, stepId: string) {
  return (blob: { checksum: Checksum; size_bytes: number }) =>
    trackInlineBlobs(deps, [{ tenantId, jobId: stepId, attempt: 1, checksum: blob.checksum, sizeBytes: blob.size_bytes }]);
}

/**
 * One output stream of a running step. Up to INLINE_OUTPUT_MAX_BYTES it is kept in memory (the inline copy
 * needs it anyway) and stored in one piece when the step ends; past that it is written into the store as
 * it arrives, so the control plane holds a chunk at a time, never the whole output. The runner bounds it
 * by the policy's `output_bytes`; the store refuses anything past the largest `output_bytes` a policy can give.
 */
export class StepOutputBlob {
  private readonly small: Buffer[] = [];
  private smallBytes = 0;
  private stream: PassThrough | undefined;
  private stored: Promise<StepBlob | undefined> | undefined;

  constructor(
    private readonly deps: JobDeps,
    private readonly tenantId: string,
    private readonly stepId: string,
    readonly name: 'stdout' | 'stderr',
  ) {}

  push(chunk: Buffer): void {
    if (this.stream) {
      this.stream.write(chunk);
      return;
    }
    this.small.push(chunk);
    this.smallBytes += chunk.length;
    if (this.smallBytes <= INLINE_OUTPUT_MAX_BYTES) return;
    this.stream = new PassThrough();
    this.stored = this.deps.artifacts
      .put(this.stream, { maxBytes: LIMIT_BOUNDS.output_bytes.max, beforeStore: trackAs(this.deps, this.tenantId, this.stepId) })
      .then((b) => ({ name: this.name, checksum: b.checksum, size_bytes: b.size_bytes }))
      // A store that failed loses this stream's artifact, not the step: the inline copy remains.
      .catch(() => undefined);
    for (const part of this.small.splice(0)) this.stream.write(part);
  }

  /** The large output once stored, or the small output's bytes to store with the step's others. */
  async finish(): Promise<{ stored: StepBlob | undefined } | { small: Buffer }> {
    if (!this.stream) return { small: Buffer.concat(this.small) };
    this.stream.end();
    return { stored: await this.stored };
  }
}

/**
 * Stores small blobs of a step: named as uploads of the step in one transaction first (so the collector
 * keeps them), then written only where the store lacks that content (it is content-addressed: `echo ok`
 * run a thousand times is one blob). A blob the store cannot take is left out; the step still ends.
 */
export async function storeSmallBlobs(deps: JobDeps, tenantId: string, stepId: string, blobs: { name: string; content: Buffer }[]): Promise<(StepBlob | undefined)[]> {
  const named = blobs.map((b) => ({ name: b.name, content: b.content, checksum: sha256Checksum(b.content), size_bytes: b.content.length }));
  if (named.length === 0) return [];
  await deps.store.transaction(async (tx) => {
    for (const b of named) await insertUpload(tx, { tenantId, jobId: stepId, attempt: 1, checksum: b.checksum, sizeBytes: b.size_bytes }, deps.clock.nowMs());
  });
  return Promise.all(
    named.map(async (b) => {
      try {
        if ((await deps.artifacts.sizeOf(deps.artifacts.uriOf(b.checksum))) !== b.size_bytes) {
          await deps.artifacts.put(b.content, { expectedChecksum: b.checksum });
        }
        return { name: b.name, checksum: b.checksum, size_bytes: b.size_bytes };
      } catch {
        return undefined;
      }
    }),
  );
}

/** Stores one file the runner collected for the step (already bounded there by the walk and the rules). */
export async function storeCollectedFile(deps: JobDeps, tenantId: string, stepId: string, name: string, content: Buffer): Promise<StepBlob> {
  const blob = await deps.artifacts.put(content, { beforeStore: trackAs(deps, tenantId, stepId) });
  return { name, checksum: blob.checksum, size_bytes: blob.size_bytes };
}

export interface RecordedStepArtifacts {
  refs: OutputRefs;
  rejected: RejectedArtifact[];
  /** blobs stored for the step that no artifact row names (refused): their uploads are to be collected */
  leftOver: boolean;
}

/**
 * Records the step's blobs as artifacts in the caller's transaction: each fits in the tenant's artifact
 * storage quota or is refused with the reason (the step still ends), as for a job's completion.
 */
export async function recordStepArtifacts(
  deps: JobDeps,
  tx: TxHandle,
  owner: { tenantId: string; stepId: string },
  outputs: { stdout: StepBlob | undefined; stderr: StepBlob | undefined },
  files: StepBlob[],
  rejectedByRunner: RejectedArtifact[],
): Promise<RecordedStepArtifacts> {
  const nowIso = toRfc3339(deps.clock.nowMs());
  const quota = await storageRoomBytes(deps, tx, owner.tenantId);
  let roomBytes = quota.quotaBytes - quota.storedBytes;
  const rejected = [...rejectedByRunner];
  const rows: { id: string; checksum: string; size_bytes: number }[] = [];
  const record = async (blob: StepBlob | undefined): Promise<string | null> => {
    if (!blob) return null;
    if (blob.size_bytes > roomBytes) {
      rejected.push({ name: blob.name, size_bytes: blob.size_bytes, reason: quotaReason(quota.quotaBytes) });
      return null;
    }
    roomBytes -= blob.size_bytes;
    const row = {
      id: newId('artifact', deps.clock.nowMs()),
      tenant_id: owner.tenantId,
      owner_type: 'session_step',
      owner_id: owner.stepId,
      name: blob.name,
      size_bytes: blob.size_bytes,
      checksum: blob.checksum,
      storage_uri: deps.artifacts.uriOf(blob.checksum),
      created_at: nowIso,
    };
    await tx.db.insertInto('artifacts').values(row).execute();
    rows.push(row);
    return row.id;
  };
  const stdout = await record(outputs.stdout);
  const stderr = await record(outputs.stderr);
  const artifacts: string[] = [];
  for (const file of files) {
    const id = await record(file);
    if (id) artifacts.push(id);
  }
  await addTenantArtifactBytes(tx, owner.tenantId, rows.reduce((n, r) => n + r.size_bytes, 0));
  await releaseRecordedUploads(tx, owner.stepId, rows.map((r) => r.checksum));
  const stored = [outputs.stdout, outputs.stderr, ...files].filter((b) => b !== undefined).length;
  return { refs: { stdout, stderr, artifacts }, rejected, leftOver: rows.length < stored };
}

/** After the step is recorded: the blobs it refused leave the store unless something else names them. */
export async function collectRefusedStepBlobs(deps: JobDeps, stepId: string): Promise<void> {
  await collectOrphanUploads(deps, { jobId: stepId });
}
