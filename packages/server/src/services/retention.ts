import { KilnError, toRfc3339 } from '@kiln/core';
import { deleteArtifactRows, type DeletedArtifact } from '../store/artifact-storage.js';
import { appendAuditEvent } from '../store/audit.js';
import { getJob } from '../store/jobs.js';
import { deleteJudge0RunsOfJobs } from '../store/judge0.js';
import type { TxHandle } from '../store/store.js';
import { notFound, requireTenantActive, requireTenantMember } from './access.js';
import { collectBlobs, collectOrphanUploads } from './artifact-storage.js';
import { auditSuccess } from './audit.js';
import type { Principal } from './context.js';
import type { JobDeps } from './job-deps.js';
import { startReaper } from './reaper.js';
import { isTerminalStatus } from './job-views.js';
import { visibleToAgent } from './jobs.js';

/**
 * Retention (issue 7, point 3): artifacts and ended job records expire after a configured time, and the
 * operator, a tenant admin or the owning agent can delete them sooner. Audit events stay: they are
 * immutable, and they record each deletion (in aggregate for the sweeper's).
 */

/**
 * Deletes ended jobs with everything that hangs off them: their artifacts (bytes off the tenants'
 * accounts), sandbox instance rows, unrecorded uploads and Judge0 submissions left with no run; workflow
 * steps that ran them keep the step without the job. Answers the deleted artifacts, whose blobs the caller collects after the commit.
 */
async function purgeJobs(tx: TxHandle, jobIds: string[]): Promise<{ jobs: { id: string; tenant_id: string }[]; artifacts: DeletedArtifact[]; uploads: (string | null)[] }> {
  if (jobIds.length === 0) return { jobs: [], artifacts: [], uploads: [] };
  const artifactIds = await tx.db
    .selectFrom('artifacts')
    .select('id')
    .where('owner_type', '=', 'job')
    .where('owner_id', 'in', jobIds)
    .execute();
  const artifacts = await deleteArtifactRows(tx, artifactIds.map((a) => a.id));
  const uploads = await tx.db.deleteFrom('blob_uploads').where('job_id', 'in', jobIds).returning('checksum').execute();
  await tx.db.deleteFrom('sandbox_instances').where('job_id', 'in', jobIds).execute();
  await tx.db.updateTable('workflow_steps').set({ job_id: null }).where('job_id', 'in', jobIds).execute();
  await deleteJudge0RunsOfJobs(tx, jobIds);
  const jobs = await tx.db.deleteFrom('jobs').where('id', 'in', jobIds).returning(['id', 'tenant_id']).execute();
  return { jobs, artifacts, uploads: uploads.map((u) => u.checksum) };
}

/**
 * Deletes an ended job's record, its artifacts and sandbox rows. A queued or running job answers 409
 * (cancel it first); a second delete answers 404. Agents delete their own jobs, tenant admins any of
 * their tenant's, the operator any.
 */
export async function deleteJob(deps: JobDeps, principal: Principal, id: string): Promise<void> {
  requireTenantActive(principal);
  const tenantId = principal.kind === 'operator' ? undefined : requireTenantMember(principal);
  const purged = await deps.store.transaction(async (tx) => {
    const row = await getJob(tx, id);
    if (!row || (tenantId !== undefined && row.tenant_id !== tenantId) || !visibleToAgent(principal, row.agent_id)) {
      throw notFound('job', id);
    }
    if (!isTerminalStatus(row.status)) {
      throw new KilnError('CONFLICT', `job ${id} is ${row.status}: cancel it first, then delete it`);
    }
    const result = await purgeJobs(tx, [id]);
    if (result.jobs.length === 0) throw notFound('job', id);
    await auditSuccess(deps, tx, principal, {
      action: 'job.delete',
      resource_type: 'job',
      resource_id: id,
      tenant_id: row.tenant_id,
      details: { artifacts: result.artifacts.length, size_bytes: sumBytes(result.artifacts) },
    });
    return result;
  });
  await collectBlobs(deps, [...purged.artifacts.map((a) => a.checksum), ...purged.uploads]);
}

function sumBytes(artifacts: DeletedArtifact[]): number {
  return artifacts.reduce((sum, a) => sum + a.size_bytes, 0);
}

/** One aggregated event per tenant for what a sweep deleted of it. */
async function auditExpiry(
  tx: TxHandle,
  nowMs: number,
  action: 'artifact.expire' | 'job.expire',
  counts: Map<string, { count: number; artifacts: number; bytes: number }>,
  cutoff: string,
): Promise<void> {
  for (const [tenantId, c] of counts) {
    await appendAuditEvent(
      tx,
      {
        tenant_id: tenantId,
        actor_id: 'kiln',
        action,
        resource_type: action === 'job.expire' ? 'job' : 'artifact',
        resource_id: null,
        outcome: 'success',
        details: { count: c.count, artifacts: c.artifacts, size_bytes: c.bytes, older_than: cutoff },
      },
      nowMs,
    );
  }
}

function tally(map: Map<string, { count: number; artifacts: number; bytes: number }>, tenantId: string, count: number, artifacts: DeletedArtifact[]) {
  const entry = map.get(tenantId) ?? { count: 0, artifacts: 0, bytes: 0 };
  entry.count += count;
  entry.artifacts += artifacts.length;
  entry.bytes += sumBytes(artifacts);
  map.set(tenantId, entry);
}

export interface RetentionSweep {
  artifacts: number;
  jobs: number;
  orphanUploads: number;
  blobsRemoved: number;
}

/**
 * One pass of the retention sweeper: at most `retentionBatchSize` expired artifacts, as many expired
 * ended jobs (with their artifacts), and as many orphan uploads; then the blobs nothing names any more.
 * Candidates are locked with SKIP LOCKED on PostgreSQL and deleted with RETURNING, so replicas sweeping
 * at once never delete or account a row twice.
 */
export async function sweepRetention(deps: JobDeps): Promise<RetentionSweep> {
  const nowMs = deps.clock.nowMs();
  const limit = deps.storage.retentionBatchSize;
  const { artifactRetentionSeconds, jobRetentionSeconds } = deps.storage;
  const deleted = await deps.store.transaction(async (tx) => {
    const artifacts: DeletedArtifact[] = [];
    const uploads: (string | null)[] = [];
    let jobCount = 0;
    if (artifactRetentionSeconds > 0) {
      const cutoff = toRfc3339(nowMs - artifactRetentionSeconds * 1000);
      const query = tx.db.selectFrom('artifacts').select('id').where('created_at', '<', cutoff).orderBy('created_at').limit(limit);
      const expired = await (tx.dialect === 'postgres' ? query.forUpdate().skipLocked() : query).execute();
      const rows = await deleteArtifactRows(tx, expired.map((r) => r.id));
      const counts = new Map<string, { count: number; artifacts: number; bytes: number }>();
      for (const row of rows) tally(counts, row.tenant_id, 1, [row]);
      await auditExpiry(tx, nowMs, 'artifact.expire', counts, cutoff);
      artifacts.push(...rows);
    }
    if (jobRetentionSeconds > 0) {
      const cutoff = toRfc3339(nowMs - jobRetentionSeconds * 1000);
      const query = tx.db
        .selectFrom('jobs')
        .select('id')
        .where('completed_at', '<', cutoff)
        .where('status', 'in', ['succeeded', 'failed', 'canceled'])
        .orderBy('completed_at')
        .limit(limit);
      const expired = await (tx.dialect === 'postgres' ? query.forUpdate().skipLocked() : query).execute();
      const purged = await purgeJobs(tx, expired.map((r) => r.id));
      const counts = new Map<string, { count: number; artifacts: number; bytes: number }>();
      for (const job of purged.jobs) tally(counts, job.tenant_id, 1, []);
      for (const a of purged.artifacts) tally(counts, a.tenant_id, 0, [a]);
      await auditExpiry(tx, nowMs, 'job.expire', counts, cutoff);
      artifacts.push(...purged.artifacts);
      uploads.push(...purged.uploads);
      jobCount = purged.jobs.length;
    }
    return { artifacts, uploads, jobCount };
  });
  const blobsRemoved = await collectBlobs(deps, [...deleted.artifacts.map((a) => a.checksum), ...deleted.uploads]);
  const orphanUploads = await collectOrphanUploads(deps, { limit });
  return { artifacts: deleted.artifacts.length, jobs: deleted.jobCount, orphanUploads, blobsRemoved };
}

/** Runs `sweepRetention` every `intervalMs` until stopped; errors are logged, never fatal. */
export function startRetentionReaper(deps: JobDeps, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  return startReaper(() => sweepRetention(deps), intervalMs, onError);
}
