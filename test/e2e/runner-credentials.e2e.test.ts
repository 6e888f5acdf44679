import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

/**
 * Issue 7, points 6 and 7, with the real processes: runners hold credentials of their own (kept in their
 * data dir), a restart proves itself with it, an impostor with the join token alone cannot take a live
 * runner's name; `secret_env` values reach the sandbox and nothing a user or the host can read.
 */
describe.each<DbKind>(['sqlite', 'postgres'])('runner credentials and secret env (%s)', (db) => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('hands secret_env to the sandbox and keeps it out of answers, the audit, the logs and the database files', async () => {
    kiln = new KilnSystem(db, { KILN_LOG_LEVEL: 'trace' });
    await kiln.startServer();
    await kiln.startRunner({ name: 'sealed', capacity: 1 });
    const { agentClient, admin, tenant } = await kiln.newTenant();
    const secret = `e2e-secret-${randomBytes(16).toString('hex')}`;
    const job = await agentClient.jobs.createAndWait({
      language: 'python',
      code: 'import hashlib, os\nprint(hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest(), os.environ["PLAIN"])',
      env: { PLAIN: 'plain-value' },
      secret_env: { API_TOKEN: secret },
    });
    expect(job).toMatchObject({ status: 'succeeded', stdout: `${createHash('sha256').update(secret).digest('hex')} plain-value\n` });
    const seen = JSON.stringify([
      job,
      await agentClient.jobs.get(job.id),
      await agentClient.jobs.list({ limit: 50 }),
      await admin.audit.list({ limit: 200 }),
      await kiln.operator.audit.list({ limit: 200 }),
      await kiln.operator.audit.list({ tenant_id: tenant.id, limit: 200 }),
    ]);
    expect(seen).not.toContain(secret);
    expect(kiln.logs()).not.toContain(secret);
    if (db === 'sqlite') {
      for (const file of ['kiln.db', 'kiln.db-wal', 'kiln.db-shm']) {
        const path = join(kiln.dir, 'server', file);
        if (!existsSync(path)) continue;
        expect(readFileSync(path).includes(secret), file).toBe(false);
        expect(statSync(path).mode & 0o777, file).toBe(0o600);
      }
    }
    expect(statSync(join(kiln.dir, 'server')).mode & 0o777).toBe(0o700);
  }, 120_000);

  it('a restarted runner proves itself with its own credential and recovers its work; an impostor cannot take its name', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const first = await kiln.startRunner({ name: 'steady', capacity: 1 });
    const dataDir = join(kiln.dir, 'steady');
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    // The control plane lists it healthy a moment before the answer reaches the runner and is kept.
    await eventually('the credential to be kept', async () => existsSync(join(dataDir, 'credential')));
    expect(statSync(join(dataDir, 'credential')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dataDir, 'credential'), 'utf8')).toMatch(/^kiln_runner_run_/);
    const [steady] = (await kiln.operator.runners.list()).items;

    // An impostor with the join token alone, under the live runner's name: refused, again and again.
    const impostor = await kiln.startRunner({ name: 'steady', capacity: 1, dataDirName: 'impostor' });
    await eventually('the impostor to be refused', async () => impostor.proc.output.join('').includes('is alive'), 20_000);

    const { agentClient } = await kiln.newTenant();
    const job = await agentClient.jobs.create({ language: 'python', code: 'import time\nprint("working", flush=True)\ntime.sleep(2)\nprint("done")' });
    await eventually('the job to start', async () => (await agentClient.jobs.get(job.id)).status === 'running');
    // Only the real one could have taken it: the impostor holds no credential.
    const [sandbox] = (await kiln.operator.sandboxes.list({ job_id: job.id })).items;
    expect(sandbox!.runner_id).toBe(steady!.id);
    await impostor.stop();

    // A crash and a restart on the same data dir, at once (the runner is still "alive" on the control plane).
    await first.kill();
    await kiln.startRunner({ name: 'steady', capacity: 1 });
    const done = await eventually('the job to finish after the restart', async () => {
      const j = await agentClient.jobs.get(job.id);
      return j.status === 'succeeded' && j.output_refs ? j : undefined;
    }, 60_000);
    expect(done).toMatchObject({ attempt: 2, stdout: 'working\ndone\n' });
    const runners = (await kiln.operator.runners.list()).items;
    expect(runners.map((r) => [r.id, r.name])).toEqual([[steady!.id, 'steady']]);
    const reregisters = (await kiln.operator.audit.list({ action: 'runner.reregister', limit: 50 })).items;
    expect(reregisters.map((e) => (e.details as { proof?: string }).proof)).toContain('credential');
  }, 120_000);
});
