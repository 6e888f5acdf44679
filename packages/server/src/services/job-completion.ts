import { jobEnded } from './plane-events.js';
import { text } from 'node:stream/consumers';
import type { EgressSummary } from '@kiln/core';
import {
  INLINE_OUTPUT_MAX_BYTES,
  KilnError,
  newId,
  toRfc3339,
  type CompletionReport,
  type ReportedBlob,
  type Verdict,
} from '@kiln/core';
import type { Checksum } from '../artifacts/artifact-store.js';
import { JobFlag, mayBe } from '../domain/job-flags.js';
import { sha256Checksum } from '../artifacts/content.js';
import { addTenantArtifactBytes, jobHasUploads, releaseRecordedUploads } from '../store/artifact-storage.js';
import { appendAuditEvent } from '../store/audit.js';
import { endSandbox, getJob, getLeasedJob, moveJob, type JobRow } from '../store/jobs.js';
import { collectOrphanUploads, quotaReason, storageRoomBytes, trackInlineBlobs } from './artifact-storage.js';
import type { JobDeps } from './job-deps.js';
import { jobFromRow } from './job-views.js';
import { feedUnstreamedOutput } from './live-output-feed.js';
import { topics } from './notifier.js';
import { assertHeldBy, auditRunnerAction } from './runner-protocol.js';
import { advanceWorkflowOfJob, WorkflowWakes } from './workflows/engine.js';

/**
 * A runner's final report of an attempt (ARCHITECTURE.md §7): its blobs stored and checked, artifacts
 * recorded under the policy's limits, the job ended, its sandbox ended, all audited in one transaction.
 */

function statusOf(verdict: Verdict): 'succeeded' | 'failed' | 'canceled' {
  if (verdict === 'ok') return 'succeeded';
  if (verdict === 'canceled') return 'canceled';
  return 'failed';
}

/**
 * The inline copy of an output: UTF-8 text, where invalid bytes already become U+FFFD; so does NUL, which
 * PostgreSQL text cannot hold (a program printing one would otherwise fail its job). The stdout and
 * stderr artifacts keep the exact bytes.
 */
async function inlineText(deps: JobDeps, blob: ReportedBlob): Promise<string | null> {
  if (blob.size_bytes > INLINE_OUTPUT_MAX_BYTES) return null;
  const decoded =
    blob.content_base64 !== undefined
      ? Buffer.from(blob.content_base64, 'base64').toString('utf8')
      : await text(await deps.artifacts.open(deps.artifacts.uriOf(blob.checksum as Checksum)));
  return decoded.replaceAll('\0', '\uFFFD');
}

/**
 * Makes sure every blob a report names is in the store: inline ones are checked against their checksum,
 * tracked (all in one transaction) and stored now; uploaded ones must be there already.
 */
async function storeReportedBlobs(deps: JobDeps, job: JobRow, attempt: number, blobs: ReportedBlob[]): Promise<void> {
  const inline: { blob: ReportedBlob; content: Buffer }[] = [];
  await Promise.all(
    blobs.map(async (blob) => {
      if (blob.content_base64 === undefined) await checkUploadedBlob(deps, blob);
      else inline.push({ blob, content: checkedInlineContent(blob) });
    }),
  );
  // Tracked before they are stored: if the completion refuses one, the collector finds it as an orphan.
  await trackInlineBlobs(
    deps,
    inline.map(({ blob, content }) => ({ tenantId: job.tenant_id, jobId: job.id, attempt, checksum: blob.checksum, sizeBytes: content.length })),
  );
  await Promise.all(
    inline.map(async ({ blob, content }) => {
      // Content-addressed: the same bytes (an empty stderr, a repeated answer) are stored once.
      if ((await deps.artifacts.sizeOf(deps.artifacts.uriOf(blob.checksum as Checksum))) === content.length) return;
      await deps.artifacts.put(content, { expectedChecksum: blob.checksum });
    }),
  );
}

/** Uploaded before: the stored size, not the reported one, is what the artifact limits are checked against. */
async function checkUploadedBlob(deps: JobDeps, blob: ReportedBlob): Promise<void> {
  const stored = await deps.artifacts.sizeOf(deps.artifacts.uriOf(blob.checksum as Checksum));
  if (stored === undefined) {
    throw new KilnError('VALIDATION_FAILED', `blob ${blob.checksum} was not uploaded for this job`, { field: 'body.artifacts' });
  }
  if (stored !== blob.size_bytes) {
    throw new KilnError('VALIDATION_FAILED', `blob ${blob.checksum} is ${stored} bytes, not the reported ${blob.size_bytes}`, {
      field: 'body.artifacts',
    });
  }
}

function checkedInlineContent(blob: ReportedBlob): Buffer {
  const content = Buffer.from(blob.content_base64!, 'base64');
  if (content.length !== blob.size_bytes) {
    throw new KilnError('VALIDATION_FAILED', `inline blob is ${content.length} bytes, not ${blob.size_bytes}`, { field: 'body' });
  }
  const actual = sha256Checksum(content);
  if (actual !== blob.checksum) {
    throw new KilnError('VALIDATION_FAILED', `the content hashes to ${actual}, not ${blob.checksum}`, { field: 'body' });
  }
  return content;
}

/** Rejected artifacts named in an audit event: a bounded sample of names, counts by reason. */
export const REJECTED_SAMPLE_SIZE = 10;

function summarizeRejections(rejected: { name: string; size_bytes: number; reason: string }[]) {
  const byReason = new Map<string, number>();
  for (const r of rejected) {
    const reason = byReason.has(r.reason) || byReason.size < 8 ? r.reason : 'other';
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
  }
  return {
    count: rejected.length,
    by_reason: Object.fromEntries(byReason),
    sample: rejected.slice(0, REJECTED_SAMPLE_SIZE).map((r) => ({ name: r.name, size_bytes: r.size_bytes, reason: r.reason })),
  };
}

/**
 * The final report of an attempt, fenced by its attempt number: a stale attempt gets 409 and changes
 * nothing; the same report again (a retry after a lost answer) is acknowledged without a second write.
 */
/** The audit's view of a sandbox's egress: its counts and its most frequent denials. */
export function egressAuditDetails(egress: EgressSummary): Record<string, unknown> {
  return {
    connections_denied: egress.connections_denied,
    connections_allowed: egress.connections_allowed,
    bytes_sent: egress.bytes_sent,
    bytes_received: egress.bytes_received,
    denied: egress.denied,
    denied_groups_dropped: egress.denied_groups_dropped,
  };
}

export async function completeJob(deps: JobDeps, runnerId: string, jobId: string, report: CompletionReport): Promise<void> {
  const current = await getJob(deps.store, jobId);
  if (!current) throw new KilnError('NOT_FOUND', `job ${jobId} does not exist`);
  if (current.attempt !== report.attempt) {
    throw new KilnError('STALE_ATTEMPT', `attempt ${report.attempt} of job ${jobId} is not the current one (${current.attempt})`);
  }
  // Before anything else, even the acknowledgement of a repeat: another runner's report changes nothing.
  assertHeldBy(current, runnerId);
  if (current.output_refs !== null) return; // already recorded
  await storeReportedBlobs(deps, current, report.attempt, [report.stdout, report.stderr, ...report.artifacts]);
  const stdoutInline = await inlineText(deps, report.stdout);
  const stderrInline = await inlineText(deps, report.stderr);
  const nowMs = deps.clock.nowMs();
  const nowIso = toRfc3339(nowMs);
  const wakes = new WorkflowWakes();
  let leftUploads = true;
  const finished = await deps.store.transaction(async (tx) => {
    const job = await getLeasedJob(tx, { jobId, attempt: report.attempt });
    assertHeldBy(job, runnerId);
    if (job.output_refs !== null) return undefined;
    const spec = JSON.parse(job.request) as { artifacts: { max_count: number; max_bytes: number; max_total_bytes: number } };
    const rejected = [...report.rejected_artifacts];
    const artifactRow = (name: string, blob: ReportedBlob) => ({
      id: newId('artifact', nowMs),
      tenant_id: job.tenant_id,
      owner_type: 'job',
      owner_id: job.id,
      name,
      size_bytes: blob.size_bytes,
      checksum: blob.checksum,
      storage_uri: deps.artifacts.uriOf(blob.checksum as Checksum),
      created_at: nowIso,
    });
    // Every row, outputs included, fits in the tenant's storage quota or is refused (the job still ends).
    const quota = await storageRoomBytes(deps, tx, job.tenant_id);
    let roomBytes = quota.quotaBytes - quota.storedBytes;
    const withinQuota = (name: string, blob: ReportedBlob) => {
      if (blob.size_bytes <= roomBytes) {
        roomBytes -= blob.size_bytes;
        return artifactRow(name, blob);
      }
      rejected.push({ name, size_bytes: blob.size_bytes, reason: quotaReason(quota.quotaBytes) });
      return null;
    };
    const stdoutRow = withinQuota('stdout', report.stdout);
    const stderrRow = withinQuota('stderr', report.stderr);
    const artifactRows = [];
    let totalBytes = 0;
    // The runner applied the policy already; the control plane checks again rather than trust it.
    for (const a of report.artifacts) {
      if (a.size_bytes > spec.artifacts.max_bytes || artifactRows.length >= spec.artifacts.max_count || totalBytes + a.size_bytes > spec.artifacts.max_total_bytes) {
        rejected.push({ name: a.name, size_bytes: a.size_bytes, reason: 'over the policy\'s artifact limits' });
        continue;
      }
      const row = withinQuota(a.name, a);
      if (!row) continue;
      totalBytes += a.size_bytes;
      artifactRows.push(row);
    }
    const recorded = [stdoutRow, stderrRow, ...artifactRows].filter((r) => r !== null);
    if (recorded.length > 0) await tx.db.insertInto('artifacts').values(recorded).execute();
    await addTenantArtifactBytes(tx, job.tenant_id, recorded.reduce((sum, r) => sum + r.size_bytes, 0));
    await releaseRecordedUploads(tx, job.id, recorded.map((r) => r.checksum));
    // What is still tracked for the job now (refused blobs, a lost attempt's uploads) is collected after
    // the end; most jobs leave nothing, and then the collection's scan and transaction are skipped.
    leftUploads = await jobHasUploads(tx, job.id);
    const values: Partial<JobRow> = {
      exit_status: JSON.stringify(report.exit_status),
      resource_usage: JSON.stringify(report.resource_usage),
      output_refs: JSON.stringify({ stdout: stdoutRow?.id ?? null, stderr: stderrRow?.id ?? null, artifacts: artifactRows.map((r) => r.id) }),
      stdout_inline: stdoutInline,
      stderr_inline: stderrInline,
      rejected_artifacts: JSON.stringify(rejected),
      lease_expires_at: null,
      error: report.error,
      compile_result: report.compile ? JSON.stringify(report.compile) : null,
    };
    let status = job.status;
    // The row as this transaction leaves it, built from what it wrote rather than read back.
    let written: JobRow;
    if (job.status === 'running') {
      status = statusOf(report.verdict);
      Object.assign(values, { verdict: report.verdict, completed_at: nowIso });
      if (!(await moveJob(tx, job, status, values, nowMs))) throw new KilnError('STALE_ATTEMPT', `job ${jobId} changed under the report`);
      written = { ...job, ...values, status, updated_at: nowIso };
    } else {
      // Canceled while it ran: keep `canceled` and why (tenant_suspended…), record what the sandbox produced.
      const set = { ...values, error: report.error ?? job.error, updated_at: nowIso };
      await tx.db.updateTable('jobs').set(set).where('id', '=', jobId).execute();
      written = { ...job, ...set };
    }
    if (job.sandbox_id) {
      // A short job's runner reports its start with its end: the sandbox goes from provisioning to its
      // end in one step (a pass through running inside this transaction would be seen by no one).
      await endSandbox(tx, job.sandbox_id, report.verdict === 'system_error' ? 'failed' : 'terminated', nowMs);
    }
    const actor = runnerId;
    await auditRunnerAction(tx, nowMs, {
      tenant_id: job.tenant_id,
      actor_id: actor,
      action: 'job.complete',
      resource_type: 'job',
      resource_id: job.id,
      subject_agent_id: job.agent_id,
      details: { attempt: job.attempt, status, verdict: report.verdict, exit_code: report.exit_status.code, artifacts: artifactRows.length },
    });
    if (rejected.length > 0) {
      // One event per job, however many files the sandbox made: the job's rejected_artifacts has them all.
      await appendAuditEvent(
        tx,
        {
          tenant_id: job.tenant_id,
          actor_id: actor,
          action: 'artifact.reject',
          resource_type: 'job',
          resource_id: job.id,
          subject_agent_id: job.agent_id,
          outcome: 'denied',
          details: { actor_kind: 'runner', ...summarizeRejections(rejected) },
        },
        nowMs,
      );
    }
    if (report.egress && report.egress.connections_denied > 0) {
      // The sandbox's refused connections, in aggregate: one event per job however many it tried.
      await appendAuditEvent(
        tx,
        {
          tenant_id: job.tenant_id,
          actor_id: actor,
          action: 'egress.deny',
          resource_type: 'job',
          resource_id: job.id,
          subject_agent_id: job.agent_id,
          outcome: 'denied',
          details: { actor_kind: 'runner', ...egressAuditDetails(report.egress) },
        },
        nowMs,
      );
    }
    // A workflow step's end advances its workflow in this same transaction (the next step's job, or its end).
    if (mayBe(job.flags, JobFlag.workflowStep)) await advanceWorkflowOfJob(deps, tx, job.id, nowMs, wakes);
    return written;
  });
  // Output the runner's events did not carry reaches the live watchers before the end does.
  if (finished) await feedUnstreamedOutput(deps, jobId, report);
  wakes.publish(deps);
  if (finished) {
    deps.events.emit(jobEnded(finished));
    if (report.egress) deps.events.emit({ type: 'egress', sandbox: 'job', summary: report.egress });
    deps.liveOutput.end(jobId);
    deps.notifier.publish(topics.job(jobId), { type: 'end', job: jobFromRow(finished) });
    // Its runner slot and its tenant's running-job cap are free: waiting lease polls claim again now,
    // instead of at their next recheck (a capped tenant's next job would wait up to that long).
    deps.notifier.publish(topics.work);
  }
  // What this job uploaded and the completion did not record (refused, lost attempts) goes now, after
  // the watchers heard the end; what fails here the retention sweeper collects later.
  if (leftUploads) await collectOrphanUploads(deps, { jobId }).catch(() => {});
}
