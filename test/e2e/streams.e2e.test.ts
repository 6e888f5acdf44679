import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { OutputTruncatedNotice } from '@kiln/core';
import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem, type DbKind } from './support/kiln-system.js';

const CLI = resolve(import.meta.dirname, '../../packages/cli/bin/kiln.js');

/** ~840 KB as fast as Python writes it: under the default 1 MiB output limit, over one request body. */
const FAST_840_KB = [
  'import sys',
  'for i in range(12000):',
  '    sys.stdout.write(f"{i:06d} " + "x" * 62 + "\\n")',
].join('\n');

/** `kiln run FILE`, as a user types it: its stdout, stderr and exit code. */
function kilnRun(url: string, apiKey: string, file: string): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, 'run', file], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_URL: url, KILN_API_KEY: apiKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', fail);
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code });
    });
  });
}

const metric = async (url: string, reason: string) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^kiln_live_output_dropped_bytes_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};

describe.each<DbKind>(['sqlite', 'postgres'])('live output end to end (%s)', (db) => {
  const kiln = new KilnSystem(db);
  // A control plane that keeps only 64 KiB of each job for watchers that join late.
  const small = new KilnSystem(db, { KILN_LIVE_OUTPUT_MAX_BYTES_PER_JOB: '65536' });
  let agentClient: KilnClient;
  let agentKey: string;
  let smallClient: KilnClient;

  beforeAll(async () => {
    await Promise.all([kiln.startServer(), small.startServer()]);
    await Promise.all([kiln.startRunner({ name: 'r1', capacity: 2 }), small.startRunner({ name: 's1', capacity: 1 })]);
    const t = await kiln.newTenant();
    agentClient = t.agentClient;
    agentKey = (await t.admin.agents.createKey(t.agent.id)).key;
    smallClient = (await small.newTenant()).agentClient;
  }, 180_000);

  afterAll(async () => {
    await Promise.all([kiln.close(), small.close()]);
  }, 60_000);

  it('streams all of 840 KB printed fast, in order, to an SSE watcher: the same bytes as the stdout artifact', async () => {
    for (let run = 0; run < 3; run++) {
      const stdout: string[] = [];
      const notices: OutputTruncatedNotice[] = [];
      const job = await agentClient.jobs.run(
        { language: 'python', code: FAST_840_KB, limits: { wall_time_ms: 30_000 } },
        { onStdout: (d) => stdout.push(d), onTruncated: (n) => notices.push(...n) },
      );
      expect(job.verdict).toBe('ok');
      const artifact = (await agentClient.artifacts.download(job.output_refs!.stdout!)).bytes.toString();
      expect(artifact.length).toBe(840_000);
      expect(notices).toEqual([]);
      const live = stdout.join('');
      expect(live.length).toBe(artifact.length);
      expect(live === artifact, `run ${run}: the live stream is the stdout artifact, byte for byte`).toBe(true);
    }
  }, 90_000);

  it('prints all of it through `kiln run`, run after run', async () => {
    const file = join(kiln.dir, 'fast.py');
    writeFileSync(file, FAST_840_KB);
    const expected = Array.from({ length: 12000 }, (_, i) => `${String(i).padStart(6, '0')} ${'x'.repeat(62)}\n`).join('');
    for (let run = 0; run < 3; run++) {
      const result = await kilnRun(kiln.url, agentKey, file);
      expect(result.code).toBe(0);
      expect(result.stderr).not.toMatch(/truncated/);
      expect(result.stdout.length).toBe(expected.length);
      expect(result.stdout === expected, `run ${run}: every line, in order`).toBe(true);
    }
    expect(kiln.logs()).not.toMatch(/PAYLOAD_TOO_LARGE|not delivered/);
  }, 120_000);

  it('says in-band that live output is incomplete, names the artifact, and counts the loss in /metrics', async () => {
    const before = await metric(small.url, 'live_buffer_full');
    const job = await smallClient.jobs.createAndWait({ language: 'python', code: FAST_840_KB, limits: { wall_time_ms: 30_000 } });
    expect(job.verdict).toBe('ok');
    // A watcher joining now finds 64 KiB of the job kept: the stream must say the rest is missing.
    const events: { type: string }[] = [];
    let live = '';
    for await (const event of smallClient.jobs.events(job.id, { timeoutMs: 30_000 })) {
      events.push(event);
      if (event.type === 'output') live += event.chunk.data;
    }
    const truncated = events.find((e): e is { type: 'truncated'; notice: OutputTruncatedNotice } => e.type === 'truncated');
    expect(truncated?.notice).toMatchObject({ reason: 'live_buffer_full' });
    expect(truncated?.notice.detail).toMatch(/stdout and stderr artifacts/);
    expect(events.at(-1)).toMatchObject({ type: 'end', job: { output_refs: { stdout: job.output_refs!.stdout } } });
    expect(live.length).toBeLessThanOrEqual(65_536);
    expect(live.length).toBeGreaterThan(0);
    expect(await metric(small.url, 'live_buffer_full')).toBe(before + 840_000 - live.length);
    expect(small.logs()).toMatch(/live output buffer of 65536 bytes is full/);
  }, 60_000);
});
