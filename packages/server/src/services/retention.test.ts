import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Job } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Checksum } from '../artifacts/artifact-store.js';
import { tenantArtifactBytes } from '../store/artifact-storage.js';
import { getJob } from '../store/jobs.js';
import { insertJudge0Submission } from '../store/judge0.js';
import { DB_KINDS } from '../store/testing.js';
import { sweepFleet } from './fleet.js';
import { completeJob } from './job-completion.js';
import { auditOf, expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, submitJob } from './jobs.js';
import { sweepRetention } from './retention.js';
import { leaseWork, uploadJobBlob } from './runner-protocol.js';

const QUOTA_BYTES = 20_000;
const DAY_MS = 86_400_000;

describe.each(DB_KINDS)('artifact storage quota and retention on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;
  let other: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(
      kind,
      {},
      { artifactRetentionSeconds: 7 * 86_400, jobRetentionSeconds: 30 * 86_400, orphanUploadGraceMs: 60_000 },
      { artifact_storage_bytes: QUOTA_BYTES },
    );
    acme = await bed.newTenant('acme');
    other = await bed.newTenant('other');
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  let runnerCount = 0;
  /** A job leased by a fresh runner: its id and attempt. */
  async function runningJob(tenant = acme): Promise<Job> {
    const runnerId = await bed.runner(`node-${(runnerCount += 1)}`);
    const job = await submitJob(bed.deps, tenant.admin, jobRequest());
    const { leases } = await leaseWork(bed.deps, { runner_id: runnerId, free_slots: 1, wait_ms: 0 });
    expect(leases.map((l) => l.job_id)).toEqual([job.id]);
    return job;
  }

  const uploadBytes = async (jobId: string, bytes: Buffer, declared?: number) =>
    uploadJobBlob(bed.deps, await bed.holder(jobId), jobId, 1, Readable.from([bytes]), declared);

  /** Completes attempt 1 with empty outputs and the given artifacts (uploaded now). */
  async function finish(jobId: string, artifacts: { name: string; bytes: Buffer }[]) {
    const blobs = [];
    for (const a of artifacts) blobs.push({ name: a.name, ...(await uploadBytes(jobId, a.bytes)) });
    await completeJob(bed.deps, await bed.holder(jobId), jobId, await bed.report(jobId, 1, { ...EMPTY_OUTPUTS, artifacts: blobs }));
    return (await getJob(bed.store, jobId))!;
  }

  /** Bytes of every blob file in the fs artifact store (what the data dir really holds). */
  function storeBytesOnDisk(): number {
    const root = dirname(dirname(dirname(fileURLToPath(bed.deps.artifacts.uriOf(`sha256:${'0'.repeat(64)}`)))));
    const walk = (dir: string): number =>
      readdirSync(dir, { withFileTypes: true }).reduce(
        (sum, e) => sum + (e.isDirectory() ? walk(join(dir, e.name)) : statSync(join(dir, e.name)).size),
        0,
      );
    try {
      return walk(root);
    } catch {
      return 0;
    }
  }

  const exists = (checksum: string) => bed.deps.artifacts.exists(bed.deps.artifacts.uriOf(checksum as Checksum));

  describe('quota', () => {
    it('accounts every recorded artifact, outputs included, in the same transaction', async () => {
      const job = await runningJob();
      await finish(job.id, [{ name: 'out/a', bytes: Buffer.alloc(3000, 1) }]);
      const rows = await bed.store.db.selectFrom('artifacts').select('size_bytes').where('tenant_id', '=', acme.tenantId).execute();
      expect(await tenantArtifactBytes(bed.store, acme.tenantId)).toBe(rows.reduce((s, r) => s + Number(r.size_bytes), 0));
      expect(await tenantArtifactBytes(bed.store, acme.tenantId)).toBe(3000);
      expect(await tenantArtifactBytes(bed.store, other.tenantId)).toBe(0);
    });

    it('refuses the next artifact once the quota is reached: the job still ends and says why', async () => {
      const first = await runningJob();
      await finish(first.id, [{ name: 'out/big', bytes: randomBytes(QUOTA_BYTES - 100) }]);
      const second = await runningJob();
      // The upload itself is refused: no room is left for it.
      await expectKilnError(uploadBytes(second.id, randomBytes(1000)), 'ARTIFACT_REJECTED');
      // A small one arriving inline in the report is refused at recording time.
      const small = randomBytes(500);
      const inline = { name: 'out/small', ...inlineBlob(small) };
      await completeJob(bed.deps, await bed.holder(second.id), second.id, await bed.report(second.id, 1, { ...EMPTY_OUTPUTS, artifacts: [inline] }));
      const row = (await getJob(bed.store, second.id))!;
      expect(row.status).toBe('succeeded');
      const rejected = JSON.parse(row.rejected_artifacts!) as { name: string; reason: string }[];
      expect(rejected.map((r) => r.name)).toEqual(['out/small']);
      expect(rejected[0]!.reason).toMatch(/artifact storage quota of 20000 bytes/);
      expect(await auditOf(bed.store, 'artifact.reject', second.id)).toHaveLength(1);
      // The refused inline blob was tracked and collected: nothing of it stays on disk.
      expect(await exists(inline.checksum)).toBe(false);
      // Another tenant is not affected by acme's full quota.
      const theirs = await runningJob(other);
      const kept = await finish(theirs.id, [{ name: 'out/x', bytes: randomBytes(5000) }]);
      expect(JSON.parse(kept.rejected_artifacts!)).toEqual([]);
    });

    it('the attack: a job spamming large artifacts cannot grow the store past the quota', async () => {
      const jobs = [await runningJob(), await runningJob()];
      const before = storeBytesOnDisk(); // blobs earlier tests left (their rows are reset, not their files)
      let refused = 0;
      // Forty 4 KB uploads of fresh bytes (160 KB) from two jobs of one tenant, against a 20 KB quota,
      // streamed without a declared length, then with one.
      for (let i = 0; i < 40; i++) {
        const bytes = randomBytes(4000);
        const upload = uploadBytes(jobs[i % 2]!.id, bytes, i % 3 === 0 ? bytes.length : undefined);
        const outcome = await upload.then(
          () => 'stored',
          (err: { code?: string }) => err.code,
        );
        if (outcome !== 'stored') {
          expect(outcome).toBe('ARTIFACT_REJECTED');
          refused += 1;
        }
        expect(storeBytesOnDisk() - before).toBeLessThanOrEqual(QUOTA_BYTES);
      }
      expect(refused).toBeGreaterThanOrEqual(35);
      // Recording never passes the quota either, and what was not recorded is collected.
      for (const job of jobs) {
        await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1, EMPTY_OUTPUTS));
      }
      expect(await tenantArtifactBytes(bed.store, acme.tenantId)).toBeLessThanOrEqual(QUOTA_BYTES);
      expect(storeBytesOnDisk() - before).toBeLessThanOrEqual(QUOTA_BYTES);
      expect(await bed.store.db.selectFrom('blob_uploads').selectAll().execute()).toEqual([]);
    });

    it('an upload of a lost attempt is an orphan: collected after the grace period, not before', async () => {
      const job = await runningJob();
      const lost = randomBytes(3000);
      const blob = await uploadBytes(job.id, lost);
      // The lease runs out; the job goes back to the queue as attempt 2.
      bed.clock.advance(bed.deps.fleet.leaseTtlMs + 1);
      await sweepFleet(bed.deps);
      expect((await getJob(bed.store, job.id))!.status).toBe('queued');
      expect((await sweepRetention(bed.deps)).orphanUploads).toBe(0);
      expect(await exists(blob.checksum)).toBe(true);
      bed.clock.advance(60_001);
      expect((await sweepRetention(bed.deps)).orphanUploads).toBe(1);
      expect(await exists(blob.checksum)).toBe(false);
      expect(await bed.store.db.selectFrom('blob_uploads').selectAll().execute()).toEqual([]);
    });
    it("an orphan's blob stays while a live upload or an artifact has the same content", async () => {
      const content = randomBytes(3000);
      const lostJob = await runningJob();
      const blob = await uploadBytes(lostJob.id, content);
      bed.clock.advance(bed.deps.fleet.leaseTtlMs + 1);
      await sweepFleet(bed.deps);
      await cancelJob(bed.deps, acme.admin, lostJob.id); // back in the queue, then canceled: never recorded
      // Another job uploads the very same bytes (content-addressed: one file) and is still running.
      const live = await runningJob(other);
      await uploadBytes(live.id, content);
      bed.clock.advance(60_001);
      await bed.store.db.updateTable('jobs').set({ lease_expires_at: null }).where('id', '=', live.id).execute();
      expect((await sweepRetention(bed.deps)).orphanUploads).toBe(1);
      expect(await exists(blob.checksum)).toBe(true);
      // Recorded as the live job's artifact, it stays for good.
      await completeJob(bed.deps, await bed.holder(live.id), live.id, await bed.report(live.id, 1, { ...EMPTY_OUTPUTS, artifacts: [{ name: 'out/same', ...blob }] }));
      await sweepRetention(bed.deps);
      expect(await exists(blob.checksum)).toBe(true);
      expect(await tenantArtifactBytes(bed.store, other.tenantId)).toBe(3000);
    });
  });

  describe('retention', () => {
    it('deletes expired artifacts and nothing else; a blob goes only when no artifact names it', async () => {
      const shared = randomBytes(2000);
      const alone = randomBytes(2000);
      const old = await runningJob();
      const oldRow = await finish(old.id, [
        { name: 'out/shared', bytes: shared },
        { name: 'out/alone', bytes: alone },
      ]);
      bed.clock.advance(5 * DAY_MS);
      const recent = await runningJob(other);
      await finish(recent.id, [{ name: 'out/shared-too', bytes: shared }]);
      bed.clock.advance(2 * DAY_MS + 1000); // the first job's artifacts are past 7 days; the second's are not
      const sweep = await sweepRetention(bed.deps);
      expect(sweep.artifacts).toBe(4); // out/shared, out/alone, stdout, stderr of the old job
      const left = await bed.store.db.selectFrom('artifacts').select(['owner_id', 'name']).orderBy('name').execute();
      expect(left.map((r) => r.owner_id)).toEqual([recent.id, recent.id, recent.id]);
      expect(await exists(`sha256:${createSha(alone)}`)).toBe(false);
      expect(await exists(`sha256:${createSha(shared)}`)).toBe(true);
      expect(await tenantArtifactBytes(bed.store, acme.tenantId)).toBe(0);
      expect(await tenantArtifactBytes(bed.store, other.tenantId)).toBe(2000);
      // The job record stays (30 days); its audit trail stays, with the expiry in one event.
      expect((await getJob(bed.store, old.id))!.id).toBe(oldRow.id);
      const expiry = await bed.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'artifact.expire').execute();
      expect(expiry.map((e) => [e.tenant_id, JSON.parse(e.details).count])).toEqual([[acme.tenantId, 4]]);
      expect(await auditOf(bed.store, 'job.complete', old.id)).toHaveLength(1);
      // A second sweep finds nothing more.
      expect((await sweepRetention(bed.deps)).artifacts).toBe(0);
    });

    it('deletes ended job records past their retention with their sandboxes and artifacts; running ones stay', async () => {
      const ended = await runningJob();
      await finish(ended.id, [{ name: 'out/a', bytes: randomBytes(100) }]);
      const running = await runningJob();
      bed.clock.advance(31 * DAY_MS);
      // Leases are extended by heartbeats in production; here the lease is simply kept alive.
      await bed.store.db.updateTable('jobs').set({ lease_expires_at: null }).where('id', '=', running.id).execute();
      const sweep = await sweepRetention(bed.deps);
      expect(sweep.jobs).toBe(1);
      expect(await getJob(bed.store, ended.id)).toBeUndefined();
      expect((await getJob(bed.store, running.id))!.status).toBe('running');
      const sandboxes = await bed.store.db.selectFrom('sandbox_instances').select('job_id').execute();
      expect(sandboxes.map((s) => s.job_id)).toEqual([running.id]);
      expect(await bed.store.db.selectFrom('artifacts').selectAll().execute()).toEqual([]);
      const expiry = await bed.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'job.expire').execute();
      expect(JSON.parse(expiry[0]!.details)).toMatchObject({ count: 1 });
      expect(await auditOf(bed.store, 'job.complete', ended.id)).toHaveLength(1);
    });

    it('takes the Judge0 submissions of deleted jobs with them, once every run of a submission is gone', async () => {
      const [endedAlone, endedBeside] = [await runningJob(), await runningJob()];
      for (const job of [endedAlone, endedBeside]) await finish(job.id, []);
      const running = await runningJob();
      const submission = (token: string, jobIds: string[]) =>
        insertJudge0Submission(bed.store, {
          token, tenant_id: acme.tenantId, agent_id: null, language_id: 71, job_ids: JSON.stringify(jobIds),
          request: '{"source_code":"print(1)"}', callback_url: null, callback_state: null, created_at: new Date(bed.clock.nowMs()).toISOString(),
        });
      await submission('one-run', [endedAlone.id]);
      await submission('two-runs', [endedBeside.id, running.id]);
      bed.clock.advance(31 * DAY_MS);
      await bed.store.db.updateTable('jobs').set({ lease_expires_at: null }).where('id', '=', running.id).execute();
      expect((await sweepRetention(bed.deps)).jobs).toBe(2);
      // The submission whose only run went is gone, source and all; the other keeps its running job's run.
      expect((await bed.store.db.selectFrom('judge0_submissions').select('token').execute()).map((r) => r.token)).toEqual(['two-runs']);
      expect((await bed.store.db.selectFrom('judge0_runs').select('job_id').execute()).map((r) => r.job_id)).toEqual([running.id]);
    });

    it('keeps everything when retention is 0, and deletes in bounded batches', async () => {
      const keepAll = { ...bed.deps, storage: { ...bed.deps.storage, artifactRetentionSeconds: 0, jobRetentionSeconds: 0 } };
      for (let i = 0; i < 3; i++) {
        const job = await runningJob();
        await finish(job.id, []);
      }
      bed.clock.advance(365 * DAY_MS);
      expect(await sweepRetention(keepAll)).toMatchObject({ artifacts: 0, jobs: 0 });
      const batched = { ...bed.deps, storage: { ...bed.deps.storage, retentionBatchSize: 2, jobRetentionSeconds: 0 } };
      expect((await sweepRetention(batched)).artifacts).toBe(2);
      expect((await sweepRetention(batched)).artifacts).toBe(2);
      expect((await sweepRetention(batched)).artifacts).toBe(2);
      expect((await sweepRetention(batched)).artifacts).toBe(0);
    });
  });
});

function createSha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A blob carried inline in the report, as the runner sends small ones. */
function inlineBlob(bytes: Buffer) {
  return { checksum: `sha256:${createSha(bytes)}`, size_bytes: bytes.length, content_base64: bytes.toString('base64') };
}

const EMPTY_OUTPUTS = { stdout: inlineBlob(Buffer.alloc(0)), stderr: inlineBlob(Buffer.alloc(0)) };
