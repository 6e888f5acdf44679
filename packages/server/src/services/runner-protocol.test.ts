import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { completionReportSchema, DEFAULT_RULESET, toRfc3339, type Job } from '@kiln/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getRunner } from '../store/fleet.js';
import { getJob } from '../store/jobs.js';
import { DB_KINDS } from '../store/testing.js';
import { drainRunner, revokeRunnerCredential, sweepFleet } from './fleet.js';
import { auditOf, expectKilnError, jobRequest, openJobBed, type JobBed, type TestTenant } from './job-testing.js';
import { cancelJob, submitJob } from './jobs.js';
import { topics } from './notifier.js';
import { publishPolicy } from './policies.js';
import { leaseWork, registerRunner, reportJobEvents, runnerHeartbeat, uploadJobBlob } from './runner-protocol.js';
import { completeJob } from './job-completion.js';

describe.each(DB_KINDS)('runner protocol on %s', (kind) => {
  let bed: JobBed;
  let acme: TestTenant;

  beforeAll(async () => {
    bed = await openJobBed(kind);
    acme = await bed.newTenant('acme');
  });
  afterAll(() => bed.close());
  beforeEach(() => bed.reset());

  const lease = (runnerId: string, freeSlots = 1) => leaseWork(bed.deps, { runner_id: runnerId, free_slots: freeSlots, wait_ms: 0 });
  const submit = (tenant = acme, overrides = {}): Promise<Job> => submitJob(bed.deps, tenant.admin, jobRequest(overrides));
  const artifactRows = (jobId: string) => bed.store.db.selectFrom('artifacts').selectAll().where('owner_id', '=', jobId).execute();
  const sandbox = (id: string) => bed.store.db.selectFrom('sandbox_instances').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  describe('registration', () => {
    const registration = (name: string) => ({ name, zone: 'default', capacity: 4, address: null, labels: {}, languages: [{ name: 'python', version: '3.11.2' }] });

    it('issues each runner a credential of its own, stored only as a hash', async () => {
      const a = await registerRunner(bed.deps, registration('node-a'));
      const b = await registerRunner(bed.deps, registration('node-b'));
      expect(a.credential).toMatch(new RegExp(`^kiln_runner_${a.runner_id}_[0-9a-f]{64}$`));
      expect(b.credential).not.toBe(a.credential);
      const row = (await getRunner(bed.store, a.runner_id))!;
      expect(row.credential_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.stringify(row)).not.toContain(a.credential!.slice(-64));
    });

    it('a restart proven by the runner\'s own credential keeps the id and the credential, and requeues what it ran', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      const [leased] = (await lease(r1)).leases;
      const before = (await getRunner(bed.store, r1))!.credential_hash;
      const again = await registerRunner(bed.deps, registration('node-a'), r1);
      expect(again).toMatchObject({ runner_id: r1, credential: null });
      expect((await getRunner(bed.store, r1))!.credential_hash).toBe(before);
      const row = (await getJob(bed.store, job.id))!;
      expect(row).toMatchObject({ status: 'queued', attempt: 1, runner_id: null, error: 'runner restarted' });
      expect((await sandbox(leased!.sandbox_id)).status).toBe('failed');
      const [reregister] = await auditOf(bed.store, 'runner.reregister', r1);
      expect(JSON.parse(reregister!.details)).toMatchObject({ recovered_jobs: 1, proof: 'credential' });
      expect(await auditOf(bed.store, 'job.requeue', job.id)).toHaveLength(1);
      // The restarted node leases it again as attempt 2.
      expect((await lease(r1)).leases.map((l) => [l.job_id, l.attempt])).toEqual([[job.id, 2]]);
    });

    it('never lets the join token take over the name of a live runner: its job keeps running once', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const credentialBefore = (await getRunner(bed.store, r1))!.credential_hash;
      // Degraded (a missed beat) is still alive: only offline frees the name.
      bed.clock.advance(bed.deps.fleet.degradedAfterMs + 1);
      await sweepFleet(bed.deps);
      const err = await expectKilnError(registerRunner(bed.deps, registration('node-a')), 'CONFLICT');
      expect(err.status).toBe(409);
      expect(err.message).toContain('credential');
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'running', attempt: 1, runner_id: r1 });
      expect((await getRunner(bed.store, r1))!.credential_hash).toBe(credentialBefore);
      expect(await auditOf(bed.store, 'runner.reregister', r1)).toEqual([]);
      expect(await auditOf(bed.store, 'job.requeue', job.id)).toEqual([]);
      // Another runner's credential does not prove anything about this name either.
      const r2 = await bed.runner('node-b');
      await expectKilnError(registerRunner(bed.deps, registration('node-a'), r2), 'CONFLICT');
    });

    it('lets the join token take over the name of a runner that is offline, with a new credential', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const oldHash = (await getRunner(bed.store, r1))!.credential_hash;
      bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
      expect(await sweepFleet(bed.deps)).toEqual({ offline: 1, recovered: 1 });
      const again = await registerRunner(bed.deps, registration('node-a'));
      expect(again.runner_id).toBe(r1);
      expect(again.credential).toMatch(/^kiln_runner_/);
      expect((await getRunner(bed.store, r1))!.credential_hash).not.toBe(oldHash);
      expect((await lease(r1)).leases.map((l) => [l.job_id, l.attempt])).toEqual([[job.id, 2]]);
    });

    it('a revoked credential frees the name: the join token may register it again', async () => {
      const r1 = await bed.runner('node-a');
      await revokeRunnerCredential(bed.deps, { kind: 'operator' }, r1);
      expect((await getRunner(bed.store, r1))!.credential_hash).toBeNull();
      expect(await auditOf(bed.store, 'runner.credential_revoke', r1)).toHaveLength(1);
      await expectKilnError(revokeRunnerCredential(bed.deps, { kind: 'operator' }, 'run_missing'), 'NOT_FOUND');
      await expectKilnError(revokeRunnerCredential(bed.deps, acme.admin, r1), 'FORBIDDEN');
      expect((await registerRunner(bed.deps, registration('node-a'))).runner_id).toBe(r1);
    });

    it('answers the fleet timings', async () => {
      const answer = await registerRunner(bed.deps, { name: 'node-t', zone: 'z', capacity: 1, address: null, labels: {}, languages: [] });
      expect(answer).toMatchObject({ heartbeat_interval_ms: bed.deps.fleet.heartbeatIntervalMs, lease_ttl_ms: bed.deps.fleet.leaseTtlMs });
    });
  });

  describe('leasing', () => {
    it('gives a lease with the frozen spec, and nothing to a draining or degraded runner', async () => {
      const r1 = await bed.runner('node-a');
      const r2 = await bed.runner('node-b');
      const job = await submit();
      await drainRunner(bed.deps, { kind: 'operator' }, r1);
      expect((await lease(r1)).leases).toEqual([]);
      // r2 misses its heartbeats long enough to be degraded (not yet offline).
      bed.clock.advance(bed.deps.fleet.degradedAfterMs + 1);
      await sweepFleet(bed.deps);
      expect((await getRunner(bed.store, r2))!.status).toBe('degraded');
      expect((await lease(r2)).leases).toEqual([]);
      await runnerHeartbeat(bed.deps, { runner_id: r2, leases: [], sandboxes: [] });
      const [leased] = (await lease(r2)).leases;
      expect(leased).toMatchObject({
        job_id: job.id,
        tenant_id: acme.tenantId,
        attempt: 1,
        lease_expires_at: toRfc3339(bed.clock.nowMs() + bed.deps.fleet.leaseTtlMs),
      });
      expect(leased!.spec).toMatchObject({ language: 'python', code: 'print(1)', limits: DEFAULT_RULESET.limits });
      expect(await auditOf(bed.store, 'job.lease', job.id)).toHaveLength(1);
    });

    it('refuses an unknown runner', async () => {
      await expectKilnError(lease('runner_unknown'), 'NOT_FOUND');
      await expectKilnError(runnerHeartbeat(bed.deps, { runner_id: 'runner_unknown', leases: [], sandboxes: [] }), 'NOT_FOUND');
    });
  });

  describe('heartbeat', () => {
    it('extends the leases it names and reports draining', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      const [leased] = (await lease(r1)).leases;
      bed.clock.advance(10_000);
      const answer = await runnerHeartbeat(bed.deps, { runner_id: r1, leases: [{ job_id: job.id, attempt: 1 }], sandboxes: [leased!.sandbox_id] });
      expect(answer).toEqual({ status: 'healthy', draining: false, stop: [] });
      expect((await getJob(bed.store, job.id))!.lease_expires_at).toBe(toRfc3339(bed.clock.nowMs() + bed.deps.fleet.leaseTtlMs));
      expect((await getRunner(bed.store, r1))!.last_heartbeat_at).toBe(toRfc3339(bed.clock.nowMs()));
      await drainRunner(bed.deps, { kind: 'operator' }, r1);
      expect((await runnerHeartbeat(bed.deps, { runner_id: r1, leases: [], sandboxes: [] })).draining).toBe(true);
    });

    it('answers stop: canceled for a canceled job, lost for one no longer held', async () => {
      const r1 = await bed.runner('node-a');
      const r2 = await bed.runner('node-b');
      const canceled = await submit();
      const moved = await submit();
      await lease(r1, 2);
      await cancelJob(bed.deps, acme.admin, canceled.id);
      // `moved` is recovered from r1 (its lease ran out) and leased to r2.
      bed.clock.advance(bed.deps.fleet.leaseTtlMs + 1);
      await runnerHeartbeat(bed.deps, { runner_id: r2, leases: [], sandboxes: [] });
      await runnerHeartbeat(bed.deps, { runner_id: r1, leases: [], sandboxes: [] });
      expect((await sweepFleet(bed.deps)).recovered).toBe(1);
      expect((await lease(r2)).leases.map((l) => [l.job_id, l.attempt])).toEqual([[moved.id, 2]]);
      const answer = await runnerHeartbeat(bed.deps, {
        runner_id: r1,
        leases: [
          { job_id: canceled.id, attempt: 1 },
          { job_id: moved.id, attempt: 1 },
        ],
        sandboxes: [],
      });
      expect(answer.stop).toEqual([
        { job_id: canceled.id, attempt: 1, reason: 'canceled' },
        { job_id: moved.id, attempt: 1, reason: 'lost' },
      ]);
    });

    it('a cancel wakes a heartbeat that waits in its long poll', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const fleet = bed.deps.fleet;
      // A long poll far longer than this test may take: only the wake-up can end it in time.
      bed.deps.fleet = { ...fleet, heartbeatIntervalMs: 60_000 };
      const wakeUps: unknown[] = [];
      const unsubscribe = bed.deps.notifier.subscribe(topics.runner(r1), (payload) => wakeUps.push(payload));
      try {
        bed.clock.advance(1000);
        const beat = runnerHeartbeat(bed.deps, { runner_id: r1, leases: [{ job_id: job.id, attempt: 1 }], sandboxes: [] });
        // Wait until the heartbeat has been recorded (it then checks for stops, finds none, and waits).
        const beatAt = toRfc3339(bed.clock.nowMs());
        while ((await getRunner(bed.store, r1))!.last_heartbeat_at !== beatAt) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, 50));
        expect(wakeUps).toHaveLength(0);
        await cancelJob(bed.deps, acme.admin, job.id);
        const answer = await beat;
        expect(answer.stop).toEqual([{ job_id: job.id, attempt: 1, reason: 'canceled' }]);
        expect(wakeUps).toHaveLength(1);
      } finally {
        unsubscribe();
        bed.deps.fleet = fleet;
      }
    }, 15_000);
  });

  describe('fencing', () => {
    it('refuses a report of a stale attempt with 409 and changes nothing', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const report = await bed.report(job.id, 1);
      const err = await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, { ...report, attempt: 2 }), 'STALE_ATTEMPT');
      expect(err.status).toBe(409);
      const row = (await getJob(bed.store, job.id))!;
      expect(row).toMatchObject({ status: 'running', attempt: 1, output_refs: null, verdict: null });
      expect(await artifactRows(job.id)).toEqual([]);
      expect(await auditOf(bed.store, 'job.complete', job.id)).toEqual([]);
    });

    it('refuses a forged report by another runner for a lease it does not hold, and changes nothing', async () => {
      const ra = await bed.runner('node-a');
      const rb = await bed.runner('node-b');
      const job = await submit();
      const [leased] = (await lease(ra)).leases;
      // B knows the job id and its attempt (it is the current one): still not B's to report.
      const forged = await bed.report(job.id, 1, { stdoutText: 'forged by B\n', verdict: 'runtime_error', exit_status: { code: 1, signal: null } });
      const err = await expectKilnError(completeJob(bed.deps, rb, job.id, forged), 'FORBIDDEN');
      expect(err.status).toBe(403);
      await expectKilnError(reportJobEvents(bed.deps, rb, job.id, { attempt: 1, events: [{ type: 'started' }] }), 'FORBIDDEN');
      await expectKilnError(uploadJobBlob(bed.deps, rb, job.id, 1, Readable.from([Buffer.from('forged bytes')])), 'FORBIDDEN');
      // B's heartbeat naming A's lease neither extends it nor keeps it: B is told it is not its own.
      bed.clock.advance(1000);
      const beat = await runnerHeartbeat(bed.deps, { runner_id: rb, leases: [{ job_id: job.id, attempt: 1 }], sandboxes: [] });
      expect(beat.stop).toEqual([{ job_id: job.id, attempt: 1, reason: 'lost' }]);
      expect((await getJob(bed.store, job.id))!).toMatchObject({
        status: 'running', attempt: 1, runner_id: ra, output_refs: null, verdict: null,
        lease_expires_at: toRfc3339(bed.clock.nowMs() - 1000 + bed.deps.fleet.leaseTtlMs),
      });
      expect((await sandbox(leased!.sandbox_id)).status).toBe('provisioning');
      expect(await artifactRows(job.id)).toEqual([]);
      expect(await auditOf(bed.store, 'job.complete', job.id)).toEqual([]);
      // A's own report still lands, credited to A.
      await completeJob(bed.deps, ra, job.id, await bed.report(job.id, 1, { stdoutText: 'from A\n' }));
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'succeeded', verdict: 'ok', stdout_inline: 'from A\n' });
      const [complete] = await auditOf(bed.store, 'job.complete', job.id);
      expect(complete!.actor_id).toBe(ra);
      // Even a repeat of a recorded report is not acknowledged for B.
      await expectKilnError(completeJob(bed.deps, rb, job.id, forged), 'FORBIDDEN');
    });

    it('acknowledges the same completion twice but records it once', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      const [leased] = (await lease(r1)).leases;
      const plot = await bed.upload(job.id, 1, 'a plot');
      const report = await bed.report(job.id, 1, { stdoutText: 'hello\n', artifacts: [{ ...plot, name: 'out/plot.txt' }] });
      await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
      await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
      const row = (await getJob(bed.store, job.id))!;
      expect(row).toMatchObject({ status: 'succeeded', verdict: 'ok', stdout_inline: 'hello\n', stderr_inline: '' });
      expect(await auditOf(bed.store, 'job.complete', job.id)).toHaveLength(1);
      expect((await artifactRows(job.id)).map((a) => a.name).sort()).toEqual(['out/plot.txt', 'stderr', 'stdout']);
      expect((await sandbox(leased!.sandbox_id)).status).toBe('terminated');
    });

    it('records output holding a NUL byte: inline as U+FFFD, the artifact byte for byte', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1, { stdoutText: 'a\0b\n' }));
      const row = (await getJob(bed.store, job.id))!;
      expect(row).toMatchObject({ status: 'succeeded', stdout_inline: 'a\uFFFDb\n' });
      const stdout = (await artifactRows(job.id)).find((a) => a.name === 'stdout')!;
      expect(stdout.size_bytes).toBe(4);
    });

    it('acknowledges the same completion sent twice at once, recording it once', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const report = await bed.report(job.id, 1);
      const results = await Promise.allSettled([completeJob(bed.deps, await bed.holder(job.id), job.id, report), completeJob(bed.deps, await bed.holder(job.id), job.id, report)]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
      expect(await auditOf(bed.store, 'job.complete', job.id)).toHaveLength(1);
      expect(await artifactRows(job.id)).toHaveLength(2);
    });

    it('refuses a late report from a lost attempt after the job was requeued and leased again', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const late = await bed.report(job.id, 1, { stdoutText: 'from the lost attempt\n' });
      // r1 stops heartbeating; r2 keeps beating and picks the job up after r1 goes offline.
      const r2 = await bed.runner('node-b');
      bed.clock.advance(bed.deps.fleet.offlineAfterMs + 1);
      await runnerHeartbeat(bed.deps, { runner_id: r2, leases: [], sandboxes: [] });
      expect(await sweepFleet(bed.deps)).toEqual({ offline: 1, recovered: 1 });
      expect((await lease(r2)).leases.map((l) => l.attempt)).toEqual([2]);
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, late), 'STALE_ATTEMPT');
      await expectKilnError(bed.upload(job.id, 1, 'late bytes'), 'STALE_ATTEMPT');
      await expectKilnError(reportJobEvents(bed.deps, await bed.holder(job.id), job.id, { attempt: 1, events: [{ type: 'started' }] }), 'STALE_ATTEMPT');
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'running', attempt: 2, runner_id: r2, output_refs: null });
      await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 2, { stdoutText: 'from attempt 2\n' }));
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'succeeded', attempt: 2, stdout_inline: 'from attempt 2\n' });
      const [complete] = await auditOf(bed.store, 'job.complete', job.id);
      expect(JSON.parse(complete!.details)).toMatchObject({ attempt: 2 });
    });

    it('takes the final report of a job canceled while it ran, once, and keeps it canceled', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      await cancelJob(bed.deps, acme.admin, job.id);
      const report = await bed.report(job.id, 1, { verdict: 'canceled', exit_status: { code: null, signal: 'SIGKILL' } });
      await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
      await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'canceled', verdict: 'canceled' });
      expect(await auditOf(bed.store, 'job.complete', job.id)).toHaveLength(1);
      expect(await artifactRows(job.id)).toHaveLength(2);
    });
  });

  describe('events and blobs', () => {
    it('marks the sandbox running on start and passes output to live watchers', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      const [leased] = (await lease(r1)).leases;
      // On PostgreSQL the lease's own status message may still be on its way: keep the output ones.
      const seen: unknown[] = [];
      let outputArrived!: () => void;
      const delivered = new Promise<void>((resolve) => (outputArrived = resolve));
      const unsubscribe = bed.deps.notifier.subscribe(topics.job(job.id), (p) => {
        if ((p as { type: string }).type !== 'output') return;
        seen.push(p);
        outputArrived();
      });
      await reportJobEvents(bed.deps, await bed.holder(job.id), job.id, {
        attempt: 1,
        events: [{ type: 'started' }, { type: 'output', stream: 'stdout', data_base64: Buffer.from('hi\n').toString('base64') }],
      });
      await delivered;
      unsubscribe();
      expect((await sandbox(leased!.sandbox_id)).status).toBe('running');
      expect(bed.deps.liveOutput.since(job.id)).toEqual([{ seq: 1, stream: 'stdout', data: 'hi\n' }]);
      expect(seen).toEqual([{ type: 'output', origin: bed.deps.liveOutput.origin, seq: 1, stream: 'stdout', data: 'hi\n' }]);
    });

    describe('output a completion carries that the events did not', () => {
      const inlineBlob = (text: string) => {
        const content = Buffer.from(text);
        return { checksum: `sha256:${createHash('sha256').update(content).digest('hex')}`, size_bytes: content.length, content_base64: content.toString('base64') };
      };
      /** Every output, loss and end message of the job, in the order watchers get them. */
      const watch = (jobId: string) => {
        const seen: { type: string; stream?: string; data?: string; lost_bytes?: number; reason?: string }[] = [];
        let ended!: () => void;
        const end = new Promise<void>((resolve) => (ended = resolve));
        const unsubscribe = bed.deps.notifier.subscribe(topics.job(jobId), (p) => {
          const m = p as (typeof seen)[number];
          if (m.type === 'status') return;
          seen.push(m.type === 'end' ? { type: 'end' } : { type: m.type, stream: m.stream, ...(m.type === 'output' ? { data: m.data } : { lost_bytes: m.lost_bytes, reason: m.reason }) });
          if (m.type === 'end') ended();
        });
        return { seen, ended: end.then(unsubscribe) };
      };

      it('feeds live watchers the rest of each stream before it announces the end, once', async () => {
        const r1 = await bed.runner('node-a');
        const job = await submit();
        await lease(r1);
        const watcher = watch(job.id);
        // The events carried "hel" (and a character cut in two), the report the whole output.
        const hello = Buffer.from('hel\u00e9lo\n');
        await reportJobEvents(bed.deps, await bed.holder(job.id), job.id, {
          attempt: 1,
          events: [{ type: 'output', stream: 'stdout', data_base64: hello.subarray(0, 4).toString('base64') }],
        });
        const report = await bed.report(job.id, 1, { stdout: inlineBlob('hel\u00e9lo\n'), stderr: inlineBlob('oops\n'), live_bytes: { stdout: 4, stderr: 0 } });
        await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
        await watcher.ended;
        expect(watcher.seen).toEqual([
          { type: 'output', stream: 'stdout', data: 'hel' },
          { type: 'output', stream: 'stdout', data: '\u00e9lo\n' },
          { type: 'output', stream: 'stderr', data: 'oops\n' },
          { type: 'end' },
        ]);
        // A watcher joining later replays the same from the live buffer; a repeated report adds nothing.
        await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
        expect(bed.deps.liveOutput.since(job.id).map((c) => ('data' in c ? c.data : ''))).toEqual(['hel', '\u00e9lo\n', 'oops\n']);
      });

      it('feeds nothing for a report without live_bytes (an older runner) or whose events carried all', async () => {
        const r1 = await bed.runner('node-a');
        for (const live_bytes of [undefined, { stdout: 3, stderr: 2 ** 48 }]) {
          const job = await submit();
          await lease(r1);
          const watcher = watch(job.id);
          const report = await bed.report(job.id, 1, { stdout: inlineBlob('hi\n'), stderr: inlineBlob('') });
          await completeJob(bed.deps, await bed.holder(job.id), job.id, live_bytes ? { ...report, live_bytes } : report);
          await watcher.ended;
          expect(watcher.seen).toEqual([{ type: 'end' }]);
          expect(bed.deps.liveOutput.since(job.id)).toEqual([]);
        }
        // The counts themselves are bounded by the protocol.
        const report = await bed.report('job_x', 1, { stdout: inlineBlob(''), stderr: inlineBlob('') });
        for (const stdout of [2 ** 48 + 1, -1, 1.5]) {
          expect(completionReportSchema.safeParse({ ...report, live_bytes: { stdout, stderr: 0 } }).success, String(stdout)).toBe(false);
        }
        expect(completionReportSchema.safeParse({ ...report, live_bytes: { stdout: 0, stderr: 0, other: 1 } }).success).toBe(false);
      });

      it('announces as missing, not as output, what the events did not carry of an uploaded output', async () => {
        const r1 = await bed.runner('node-a');
        const job = await submit();
        await lease(r1);
        const watcher = watch(job.id);
        const report = await bed.report(job.id, 1, { stdoutText: 'x'.repeat(1000), live_bytes: { stdout: 400, stderr: 0 } });
        await completeJob(bed.deps, await bed.holder(job.id), job.id, report);
        await watcher.ended;
        expect(watcher.seen).toEqual([{ type: 'lost', stream: 'stdout', lost_bytes: 600, reason: 'not_buffered' }, { type: 'end' }]);
      });
    });

    it('refuses a blob for an attempt that is not leased', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await expectKilnError(bed.upload(job.id, 1, 'too early'), 'STALE_ATTEMPT');
      await lease(r1);
      await expectKilnError(bed.upload(job.id, 2, 'wrong attempt'), 'STALE_ATTEMPT');
      await expectKilnError(bed.upload('job_missing', 1, 'x'), 'NOT_FOUND');
      expect(await bed.upload(job.id, 1, 'ok')).toMatchObject({ size_bytes: 2 });
    });

    it('refuses a blob larger than the job may produce', async () => {
      const small = await bed.newTenant('small-blobs');
      await publishPolicy(bed.deps, small.admin, small.policyId, {
        expected_version: 1,
        ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, output_bytes: 1024 }, artifacts: { max_count: 4, max_bytes: 512, max_total_bytes: 2048 } },
      });
      const r1 = await bed.runner('node-a');
      const job = await submit(small);
      await lease(r1);
      expect(await bed.upload(job.id, 1, 'x'.repeat(1024))).toMatchObject({ size_bytes: 1024 });
      await expectKilnError(uploadJobBlob(bed.deps, await bed.holder(job.id), job.id, 1, Readable.from([randomBytes(1025)])), 'ARTIFACT_REJECTED');
    });

    it('refuses a completion naming a blob that was never uploaded', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const ghost = `sha256:${createHash('sha256').update(randomBytes(16)).digest('hex')}`;
      const report = await bed.report(job.id, 1, { artifacts: [{ checksum: ghost, size_bytes: 3, name: 'out/ghost' }] });
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, report), 'VALIDATION_FAILED');
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'running', output_refs: null });
      expect(await artifactRows(job.id)).toEqual([]);
    });

    it('refuses a completion that under-reports an uploaded blob\'s size', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const blob = await bed.upload(job.id, 1, 'x'.repeat(100));
      const report = await bed.report(job.id, 1, { artifacts: [{ ...blob, size_bytes: 1, name: 'out/liar' }] });
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, report), 'VALIDATION_FAILED');
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'running', output_refs: null });
    });

    it('takes small blobs inline in the report, checked against their size and checksum', async () => {
      const r1 = await bed.runner('node-a');
      const job = await submit();
      await lease(r1);
      const inline = (text: string, lie: { size?: number; checksum?: string } = {}) => {
        const content = Buffer.from(text);
        return {
          checksum: lie.checksum ?? `sha256:${createHash('sha256').update(content).digest('hex')}`,
          size_bytes: lie.size ?? content.length,
          content_base64: content.toString('base64'),
        };
      };
      const base = await bed.report(job.id, 1);
      const other = `sha256:${createHash('sha256').update('something else').digest('hex')}`;
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, { ...base, stdout: inline('inline out\n', { size: 3 }) }), 'VALIDATION_FAILED');
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, { ...base, stdout: inline('inline out\n', { checksum: other }) }), 'VALIDATION_FAILED');
      await expectKilnError(completeJob(bed.deps, await bed.holder(job.id), job.id, { ...base, attempt: 2, stdout: inline('stale\n') }), 'STALE_ATTEMPT');
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'running', output_refs: null });
      const stdout = inline('inline out\n');
      await completeJob(bed.deps, await bed.holder(job.id), job.id, { ...base, stdout, artifacts: [{ ...inline('a small artifact'), name: 'out/small.txt' }] });
      expect((await getJob(bed.store, job.id))!).toMatchObject({ status: 'succeeded', stdout_inline: 'inline out\n' });
      const rows = await artifactRows(job.id);
      expect(rows.map((r) => r.name).sort()).toEqual(['out/small.txt', 'stderr', 'stdout']);
      for (const row of rows) expect(await bed.deps.artifacts.exists(row.storage_uri)).toBe(true);
    });

    it("records artifacts over the policy's limits as rejected, and audits them as one artifact.reject", async () => {
      const tight = await bed.newTenant('tight');
      await publishPolicy(bed.deps, tight.admin, tight.policyId, {
        expected_version: 1,
        ruleset: { ...DEFAULT_RULESET, artifacts: { max_count: 2, max_bytes: 10, max_total_bytes: 15 } },
      });
      const r1 = await bed.runner('node-a');
      const job = await submit(tight);
      await lease(r1);
      const blob = async (name: string, text: string) => ({ ...(await bed.upload(job.id, 1, text)), name });
      const a = await blob('out/a', 'a'.repeat(8));
      const b = await blob('out/b', 'b'.repeat(8)); // 16 bytes in total: over max_total_bytes
      const c = await blob('out/c', 'c'.repeat(11)); // over max_bytes
      const d = await blob('out/d', 'd'.repeat(3));
      const e = await blob('out/e', 'e'); // a third artifact: over max_count
      const runnerRejected = { name: 'out/huge', size_bytes: 1 << 30, reason: 'over max_bytes' };
      await completeJob(bed.deps, await bed.holder(job.id), job.id, await bed.report(job.id, 1, { artifacts: [a, b, c, d, e], rejected_artifacts: [runnerRejected] }));
      const row = (await getJob(bed.store, job.id))!;
      expect(row.status).toBe('succeeded');
      const rejected = JSON.parse(row.rejected_artifacts!) as { name: string }[];
      expect(rejected.map((r) => r.name)).toEqual(['out/huge', 'out/b', 'out/c', 'out/e']);
      const kept = (await artifactRows(job.id)).map((r) => r.name).sort();
      expect(kept).toEqual(['out/a', 'out/d', 'stderr', 'stdout']);
      const audits = await auditOf(bed.store, 'artifact.reject', job.id);
      expect(audits.map((x) => x.outcome)).toEqual(['denied']);
      expect(JSON.parse(audits[0]!.details)).toMatchObject({ count: 4 });
      expect(JSON.parse(audits[0]!.details).sample.map((x: { name: string }) => x.name).sort()).toEqual(['out/b', 'out/c', 'out/e', 'out/huge']);
      const refs = JSON.parse(row.output_refs!) as { artifacts: string[] };
      expect(refs.artifacts).toHaveLength(2);
    });
  });
});
