import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem } from './support/kiln-system.js';

const QUOTA_BYTES = 1024 * 1024;

/** Bytes of every file under `dir` (what the data dir really holds). */
function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

// The attack of issue 7: a job writing large artifacts fast filled the data dir with no way back. With
// a 1 MiB quota, jobs that each write 3 MB of artifacts cannot grow the store past it; they still end,
// saying what was refused, and deleting a job makes room again.
describe('artifact storage quota end to end (sqlite)', () => {
  const kiln = new KilnSystem('sqlite', { KILN_QUOTA_ARTIFACT_STORAGE_BYTES: String(QUOTA_BYTES) });
  let agentClient: KilnClient;
  const artifactsDir = () => join(kiln.dir, 'server', 'artifacts');
  const spam = 'import os\nos.makedirs("out", exist_ok=True)\nfor i in range(10):\n    open(f"out/{i}.bin", "wb").write(os.urandom(300_000))\nprint("done")';

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'quota-runner', capacity: 2 });
    ({ agentClient } = await kiln.newTenant());
  }, 120_000);
  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('refuses what does not fit, ends the jobs normally, and frees room on delete', async () => {
    const jobs = await Promise.all([0, 1, 2].map(() => agentClient.jobs.createAndWait({ language: 'python', code: spam, limits: { wall_time_ms: 20_000 } })));
    let recorded = 0;
    for (const job of jobs) {
      expect(job).toMatchObject({ status: 'succeeded', stdout: 'done\n' });
      const refused = job.rejected_artifacts ?? [];
      expect(refused.length + job.output_refs!.artifacts.length).toBe(10);
      for (const r of refused) expect(r.reason).toMatch(/artifact storage quota/);
      recorded += job.output_refs!.artifacts.length;
    }
    // 30 files of 300 KB were written; at most three fit in 1 MiB, and the data dir holds no more.
    expect(recorded).toBeLessThanOrEqual(3);
    expect(bytesUnder(artifactsDir())).toBeLessThanOrEqual(QUOTA_BYTES);

    for (const job of jobs) await agentClient.jobs.delete(job.id);
    await expect(agentClient.jobs.get(jobs[0]!.id)).rejects.toMatchObject({ status: 404 });
    expect(bytesUnder(artifactsDir())).toBe(0);
    const after = await agentClient.jobs.createAndWait({ language: 'python', code: spam, limits: { wall_time_ms: 20_000 } });
    expect(after.output_refs!.artifacts.length).toBeGreaterThan(0);
  }, 120_000);
});
