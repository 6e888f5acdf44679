import { newId, toRfc3339 } from '@kiln/core';
import { sql } from 'kysely';
import { precompiled } from './precompiled.js';
import type { DbHandle, TxHandle } from './store.js';

/**
 * Artifact storage accounting: a tenant's stored bytes (the sum of its artifact rows' size_bytes, kept
 * in the same transaction as every insert and delete of an artifact row) and the blob uploads that
 * reserve room until a completion records them. Content-addressed blobs may be shared between rows and
 * tenants: bytes are accounted per row, and a blob is removed only when no row and no upload names it.
 */

/**
 * Locks the tenant's storage row (PostgreSQL; SQLite has one writer) and answers what is in use: the
 * bytes of its artifact rows plus the bytes reserved by its unrecorded uploads.
 */
export async function lockTenantStorage(tx: TxHandle, tenantId: string): Promise<{ storedBytes: number; reservedBytes: number }> {
  // One statement creates the account row if needed, locks it (an upsert's update takes the row lock on
  // PostgreSQL, as FOR UPDATE would) and answers its bytes.
  const [row] = (await lockAccount(tx, tenantId)).rows;
  const [reserved] = (await reservedOf(tx, tenantId)).rows;
  return { storedBytes: Number(row?.artifact_bytes ?? 0), reservedBytes: Number(reserved?.n ?? 0) };
}

const lockAccount = precompiled<[tenantId: string], { artifact_bytes: number | string }>(
  (db, tenantId) =>
    db
      .insertInto('tenant_storage')
      .values({ tenant_id: tenantId, artifact_bytes: 0 })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ artifact_bytes: sql<number>`tenant_storage.artifact_bytes` }))
      .returning('artifact_bytes'),
  1,
);

const reservedOf = precompiled<[tenantId: string], { n: number | string }>(
  (db, tenantId) =>
    db
      .selectFrom('blob_uploads')
      .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('size_bytes'), sql<number>`0`).as('n'))
      .where('tenant_id', '=', tenantId),
  1,
);

/** Adds (or, negative, removes) bytes of artifact rows to the tenant's account. */
export async function addTenantArtifactBytes(tx: TxHandle, tenantId: string, deltaBytes: number): Promise<void> {
  if (deltaBytes === 0) return;
  await addToAccount(tx, tenantId, Math.max(0, deltaBytes), deltaBytes);
}

const addToAccount = precompiled<[tenantId: string, initialBytes: number, deltaBytes: number], never>(
  (db, tenantId, initialBytes, deltaBytes) =>
    db
      .insertInto('tenant_storage')
      .values({ tenant_id: tenantId, artifact_bytes: initialBytes })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ artifact_bytes: sql<number>`tenant_storage.artifact_bytes + ${deltaBytes}` })),
  3,
);

export async function tenantArtifactBytes(h: DbHandle, tenantId: string): Promise<number> {
  const row = await h.db.selectFrom('tenant_storage').select('artifact_bytes').where('tenant_id', '=', tenantId).executeTakeFirst();
  return Number(row?.artifact_bytes ?? 0);
}

export interface NewUpload {
  tenantId: string;
  jobId: string;
  attempt: number;
  /** known for inline blobs; null while an upload streams */
  checksum: string | null;
  sizeBytes: number;
}

export async function insertUpload(tx: TxHandle, upload: NewUpload, nowMs: number): Promise<string> {
  const id = newId('upload', nowMs);
  if (upload.checksum !== null) await lockContent(tx, upload.checksum);
  await tx.db
    .insertInto('blob_uploads')
    .values({
      id,
      tenant_id: upload.tenantId,
      job_id: upload.jobId,
      attempt: upload.attempt,
      checksum: upload.checksum,
      size_bytes: upload.sizeBytes,
      created_at: toRfc3339(nowMs),
    })
    .execute();
  return id;
}

/**
 * Several uploads at once (a completion's inline blobs): their contents locked in checksum order (two
 * completions naming the same blobs never wait for each other in a cycle), then one multi-row insert.
 */
export async function insertUploads(tx: TxHandle, uploads: readonly NewUpload[], nowMs: number): Promise<void> {
  if (uploads.length === 0) return;
  const checksums = [...new Set(uploads.map((u) => u.checksum).filter((c): c is string => c !== null))].sort();
  // On SQLite the insert itself takes the single writer's lock, and nothing is read before it.
  if (tx.dialect === 'postgres') for (const checksum of checksums) await lockContent(tx, checksum);
  const createdAt = toRfc3339(nowMs);
  await tx.db
    .insertInto('blob_uploads')
    .values(
      uploads.map((u) => ({
        id: newId('upload', nowMs),
        tenant_id: u.tenantId,
        job_id: u.jobId,
        attempt: u.attempt,
        checksum: u.checksum,
        size_bytes: u.sizeBytes,
        created_at: createdAt,
      })),
    )
    .execute();
}

/**
 * Serialises everything that names or removes one blob, until the caller's transaction ends: an
 * advisory lock on the checksum on PostgreSQL; on SQLite a write statement takes the single writer's
 * lock at once (a transaction that only read would let a writer in between its check and its removal).
 */
export async function lockContent(tx: TxHandle, checksum: string): Promise<void> {
  if (tx.dialect === 'postgres') {
    await sql`select pg_advisory_xact_lock(hashtextextended(${checksum}, 4242006))`.execute(tx.db);
  } else {
    await tx.db.deleteFrom('blob_uploads').where('id', '=', '').execute();
  }
}

/** The upload's bytes arrived: its reservation shrinks to what was stored, and it names its blob. */
export async function finishUpload(tx: TxHandle, id: string, checksum: string, sizeBytes: number): Promise<void> {
  await lockContent(tx, checksum);
  await tx.db.updateTable('blob_uploads').set({ checksum, size_bytes: sizeBytes }).where('id', '=', id).execute();
}

export async function dropUpload(h: DbHandle, id: string): Promise<void> {
  await h.db.deleteFrom('blob_uploads').where('id', '=', id).execute();
}

/** The completion recorded these blobs as artifacts: their uploads no longer reserve anything. */
export async function releaseRecordedUploads(tx: TxHandle, jobId: string, checksums: string[]): Promise<void> {
  if (checksums.length === 0) return;
  await tx.db.deleteFrom('blob_uploads').where('job_id', '=', jobId).where('checksum', 'in', checksums).execute();
}

const anyUploadOfJob = precompiled<[jobId: string], { id: string }>(
  (db, jobId) => db.selectFrom('blob_uploads').select('id').where('job_id', '=', jobId).limit(1),
  1,
);

/** Whether any upload of the job, of any attempt, is still tracked (one seek in blob_uploads_by_job). */
export async function jobHasUploads(h: DbHandle, jobId: string): Promise<boolean> {
  return (await anyUploadOfJob(h, jobId)).rows.length > 0;
}

/**
 * Uploads no completion will record: their job is gone or ended, or they belong to an attempt that was
 * lost (the job went back to the queue or on to a later attempt). Older than `before` only, so an upload racing its own
 * completion is left alone. Locked with SKIP LOCKED on PostgreSQL so replicas collect different rows.
 */
export async function orphanUploads(
  tx: TxHandle,
  args: { before: string; limit: number; jobId?: string },
): Promise<{ id: string; tenant_id: string; checksum: string | null }[]> {
  let query = tx.db
    .selectFrom('blob_uploads as u')
    .leftJoin('jobs as j', 'j.id', 'u.job_id')
    .select(['u.id', 'u.tenant_id', 'u.checksum'])
    .where('u.created_at', '<', args.before)
    .where((eb) => {
      // Only the current attempt of a job that still awaits its runner's report can record an upload.
      const sameAttempt = eb('j.attempt', '=', eb.ref('u.attempt'));
      const awaitingReport = eb.or([
        eb.and([eb('j.status', '=', 'running'), sameAttempt]),
        eb.and([eb('j.status', '=', 'canceled'), eb('j.output_refs', 'is', null), eb('j.runner_id', 'is not', null), sameAttempt]),
      ]);
      return eb.or([eb('j.id', 'is', null), eb.not(awaitingReport)]);
    })
    .orderBy('u.id')
    .limit(args.limit);
  if (args.jobId !== undefined) query = query.where('u.job_id', '=', args.jobId);
  const rows = await (tx.dialect === 'postgres' ? query.forUpdate('u').skipLocked() : query).execute();
  if (rows.length > 0) await tx.db.deleteFrom('blob_uploads').where('id', 'in', rows.map((r) => r.id)).execute();
  return rows;
}

/** Whether any artifact row or upload still names this content. */
export async function blobReferenced(h: DbHandle, checksum: string): Promise<boolean> {
  const artifact = await h.db.selectFrom('artifacts').select('id').where('checksum', '=', checksum).limit(1).executeTakeFirst();
  if (artifact) return true;
  const upload = await h.db.selectFrom('blob_uploads').select('id').where('checksum', '=', checksum).limit(1).executeTakeFirst();
  return upload !== undefined;
}

export interface DeletedArtifact {
  tenant_id: string;
  checksum: string;
  size_bytes: number;
}

/**
 * Deletes artifact rows and takes their bytes off their tenants' accounts, in the caller's transaction.
 * Counts only rows this call deleted (RETURNING), so two replicas deleting the same rows at once never
 * subtract twice.
 */
export async function deleteArtifactRows(tx: TxHandle, ids: string[]): Promise<DeletedArtifact[]> {
  if (ids.length === 0) return [];
  const deleted = await tx.db
    .deleteFrom('artifacts')
    .where('id', 'in', ids)
    .returning(['tenant_id', 'checksum', 'size_bytes'])
    .execute();
  const byTenant = new Map<string, number>();
  for (const row of deleted) byTenant.set(row.tenant_id, (byTenant.get(row.tenant_id) ?? 0) + Number(row.size_bytes));
  for (const [tenantId, bytes] of byTenant) await addTenantArtifactBytes(tx, tenantId, -bytes);
  return deleted.map((r) => ({ ...r, size_bytes: Number(r.size_bytes) }));
}
