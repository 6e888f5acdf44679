import { createHash } from 'node:crypto';
import type { Job } from '@kiln/core';
import { KilnApiError, NotFoundError, PolicyViolationError, type KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

/** Hello world, stdin echo and an exit code in each language the runners offer. */
const PROGRAMS: Record<string, string> = {
  python: 'import sys\nprint("hello " + sys.stdin.read().strip())\nsys.exit(3)',
  node: 'const s = require("fs").readFileSync(0, "utf8").trim(); console.log("hello " + s); process.exit(3);',
  bash: 'read s; echo "hello $s"; exit 3',
  sh: 'read s; echo "hello $s"; exit 3',
  c: '#include <stdio.h>\nint main(){char s[64]; scanf("%63s", s); printf("hello %s\\n", s); return 3;}',
  cpp: '#include <iostream>\n#include <string>\nint main(){std::string s; std::cin >> s; std::cout << "hello " << s << std::endl; return 3;}',
  java: 'public class Main { public static void main(String[] a) throws Exception { java.util.Scanner in = new java.util.Scanner(System.in); System.out.println("hello " + in.next()); System.exit(3); } }',
  perl: 'my $s = <STDIN>; chomp $s; print "hello $s\\n"; exit 3;',
  tcl: 'gets stdin s; puts "hello $s"; exit 3',
  ruby: 's = STDIN.read.strip; puts "hello #{s}"; exit 3',
  php: '<?php $s = trim(stream_get_contents(STDIN)); echo "hello $s\\n"; exit(3);',
  lua: 'local s = io.read("l"); print("hello " .. s); os.exit(3)',
};

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe.each<DbKind>(['sqlite', 'postgres'])('jobs end to end (%s)', (db) => {
  const kiln = new KilnSystem(db);
  let admin: KilnClient;
  let agentClient: KilnClient;
  let agentId: string;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const t = await kiln.newTenant();
    admin = t.admin;
    agentClient = t.agentClient;
    agentId = t.agent.id;
  }, 120_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('runs twelve languages: stdin to stdout and the exit code', async () => {
    const langs = await admin.languages();
    // The catalog offers many more (languages.e2e.test.ts); these twelve are the long-standing ones.
    expect(langs.items.map((l) => l.name)).toEqual(expect.arrayContaining(Object.keys(PROGRAMS)));
    const jobs = await Promise.all(
      Object.entries(PROGRAMS).map(([language, code]) =>
        agentClient.jobs.createAndWait({ language, code, stdin: 'kiln\n', limits: { wall_time_ms: 20_000 } }),
      ),
    );
    for (const job of jobs) {
      expect({ language: job.language, stdout: job.stdout, code: job.exit_status?.code }).toEqual({
        language: job.language,
        stdout: 'hello kiln\n',
        code: 3,
      });
      expect(job.status).toBe('failed');
      expect(job.verdict).toBe('runtime_error');
      expect(job.agent_id).toBe(agentId);
      expect(job.resource_usage?.wall_time_ms).toBeGreaterThan(0);
    }
  }, 120_000);

  it('gives every verdict from evidence', async () => {
    const run = (language: string, code: string, limits = {}) =>
      agentClient.jobs.createAndWait({ language, code, limits: { wall_time_ms: 10_000, ...limits } });
    const [ok, compile, runtime, cpu, wall, memory, output, fileSize] = await Promise.all([
      run('python', 'print(1)'),
      run('c', 'int main( { return 0; }'),
      run('python', 'raise ValueError("boom")'),
      run('python', 'while True: pass', { cpu_time_ms: 300 }),
      run('python', 'import time; time.sleep(30)', { wall_time_ms: 500 }),
      run('python', 'x = bytearray(512 * 1024 * 1024)', { memory_bytes: 64 * 1024 * 1024 }),
      run('bash', 'yes', { output_bytes: 10_000 }),
      run('bash', 'head -c 10000000 /dev/zero > big', { file_size_bytes: 100_000 }),
    ]);
    expect(ok).toMatchObject({ status: 'succeeded', verdict: 'ok', exit_status: { code: 0 } });
    expect(compile).toMatchObject({ status: 'failed', verdict: 'compile_error' });
    expect(compile.stderr).toMatch(/error/);
    expect(runtime).toMatchObject({ verdict: 'runtime_error' });
    expect(runtime.stderr).toContain('ValueError: boom');
    expect(cpu.verdict).toBe('time_limit');
    expect(wall.verdict).toBe('time_limit');
    expect(memory.verdict).toBe('memory_limit');
    expect(output.verdict).toBe('output_limit');
    const stored = await agentClient.artifacts.get(output.output_refs!.stdout!);
    expect(stored.size_bytes).toBeLessThanOrEqual(10_000);
    expect(fileSize.verdict).toBe('file_size_limit');
  }, 120_000);

  it('refuses requests above the policy with the field and the ceiling', async () => {
    const err = (await agentClient.jobs
      .create({ language: 'python', code: 'print(1)', limits: { memory_bytes: 8 * 1024 ** 3 } })
      .catch((e: unknown) => e)) as PolicyViolationError;
    expect(err).toBeInstanceOf(PolicyViolationError);
    expect(err.field).toBe('body.limits.memory_bytes');
    expect(err.problem.ceiling).toBe(268435456);

    const policies = await admin.policies.list();
    const policy = policies.items.find((p) => p.name === 'default')!;
    const restricted = await admin.policies.create({
      name: 'python-only',
      ruleset: { ...policy.ruleset, languages: ['python'], limits: { ...policy.ruleset.limits, cpu_time_ms: 1000 } },
    });
    const refused = (await agentClient.jobs
      .create({ language: 'bash', code: 'echo', policy_id: restricted.id })
      .catch((e: unknown) => e)) as KilnApiError;
    expect(refused.code).toBe('POLICY_VIOLATION');
    expect(refused.field).toBe('body.language');
    const pinned = await agentClient.jobs.createAndWait({ language: 'python', code: 'print(2)', policy_id: restricted.id });
    expect(pinned).toMatchObject({ policy_id: restricted.id, policy_version: 1, stdout: '2\n' });

    const unknown = (await agentClient.jobs.create({ language: 'brainfuck', code: 'x' }).catch((e: unknown) => e)) as KilnApiError;
    expect(unknown.status).toBe(422);
    const invalid = (await agentClient.jobs.create({ language: 'python' } as never).catch((e: unknown) => e)) as KilnApiError;
    expect(invalid.code).toBe('VALIDATION_FAILED');
  }, 60_000);

  it('collects artifacts with checksums and never follows planted links', async () => {
    const code = [
      'import os',
      'os.makedirs("out/sub", exist_ok=True)',
      'open("out/result.txt", "w").write("the answer is 42\\n")',
      'open("out/sub/data.bin", "wb").write(bytes(range(256)) * 4)',
      'os.symlink("/etc/passwd", "out/passwd")',
      'os.symlink("/etc", "out/etc")',
      'try:\n    os.link("/etc/hostname", "out/hostname")\nexcept OSError:\n    pass',
      'open("out/big.bin", "wb").write(b"x" * 5000)',
      'print("done")',
    ].join('\n');
    const base = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
    const small = await admin.policies.create({
      name: 'small-artifacts',
      ruleset: { ...base.ruleset, artifacts: { max_count: 8, max_bytes: 4096, max_total_bytes: 65536 } },
    });
    const job = await agentClient.jobs.createAndWait({ language: 'python', code, policy_id: small.id });
    expect(job.verdict).toBe('ok');
    const arts = await agentClient.artifacts.list({ owner_type: 'job', owner_id: job.id });
    const names = arts.items.map((a) => a.name).sort();
    expect(names).toEqual(['out/result.txt', 'out/sub/data.bin', 'stderr', 'stdout']);
    expect(job.rejected_artifacts?.map((r) => r.name)).toContain('out/big.bin');
    for (const art of arts.items) {
      const content = await agentClient.artifacts.download(art.id);
      expect(content.checksum).toBe(art.checksum);
      expect(sha256(content.bytes)).toBe(art.checksum);
      expect(content.bytes.length).toBe(art.size_bytes);
    }
    const result = arts.items.find((a) => a.name === 'out/result.txt')!;
    expect((await agentClient.artifacts.download(result.id)).bytes.toString()).toBe('the answer is 42\n');
    expect(job.output_refs?.artifacts).toHaveLength(2);
    const audit = await admin.audit.list({ action: 'artifact.reject', resource_id: job.id });
    expect(audit.items.length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('cancels a queued job at once and a running one within a second', async () => {
    const running = await agentClient.jobs.create({ language: 'python', code: 'import time\nprint("started", flush=True)\ntime.sleep(60)' });
    await eventually('the job to run', async () => (await agentClient.jobs.get(running.id)).status === 'running');
    const canceled = await agentClient.jobs.cancel(running.id);
    expect(canceled.status).toBe('canceled');
    const settled = await eventually('the sandbox to stop', async () => {
      const job = await agentClient.jobs.get(running.id);
      return job.output_refs !== null ? job : undefined;
    }, 10_000);
    expect(settled.status).toBe('canceled');
    expect(settled.resource_usage!.wall_time_ms).toBeLessThan(10_000);
    const sandboxes = await kiln.operator.sandboxes.list({ job_id: running.id });
    expect(sandboxes.items.map((s) => s.status)).toEqual(['terminated']);
    // Canceling again is idempotent: the ended job, unchanged.
    expect(await agentClient.jobs.cancel(running.id)).toMatchObject({
      id: running.id, status: 'canceled', verdict: settled.verdict, completed_at: settled.completed_at, output_refs: settled.output_refs,
    });
  }, 30_000);

  it('streams output as it is produced and ends the stream with the job', async () => {
    const chunks: string[] = [];
    const job = await agentClient.jobs.run(
      { language: 'python', code: 'import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)' },
      { onStdout: (d) => chunks.push(d) },
    );
    expect(job.status).toBe('succeeded');
    expect(chunks.join('')).toBe('0\n1\n2\n');
  }, 30_000);

  it('answers 404 for another tenant\'s (and another agent\'s) jobs and artifacts', async () => {
    const mine = await agentClient.jobs.createAndWait({ language: 'python', code: 'print("secret")' });
    const other = await kiln.newTenant();
    for (const call of [
      () => other.admin.jobs.get(mine.id),
      () => other.agentClient.jobs.cancel(mine.id),
      () => other.admin.artifacts.get(mine.output_refs!.stdout!),
      () => other.admin.artifacts.download(mine.output_refs!.stdout!),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(NotFoundError);
    }
    const list = await other.admin.jobs.list();
    expect(list.items).toEqual([]);

    // Within the tenant, another agent sees none of this agent's work; the tenant admin sees all of it.
    const peer = await admin.agents.create({ name: 'peer' });
    const peerClient = kiln.client((await admin.agents.createKey(peer.id)).key);
    await expect(peerClient.jobs.get(mine.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(peerClient.artifacts.download(mine.output_refs!.stdout!)).rejects.toBeInstanceOf(NotFoundError);
    expect((await peerClient.artifacts.list({ owner_type: 'job', owner_id: mine.id })).items).toEqual([]);
    expect((await peerClient.jobs.list()).items).toEqual([]);
    expect((await admin.jobs.get(mine.id)).stdout).toBe('secret\n');
    expect((await admin.artifacts.list({ owner_type: 'job', owner_id: mine.id })).items).toHaveLength(2);
  }, 30_000);

  it('keeps an audit trail that verifies', async () => {
    const verified = await admin.audit.verify();
    expect(verified.ok).toBe(true);
    const completes = await admin.audit.list({ action: 'job.complete', limit: 200 });
    expect(completes.items.length).toBeGreaterThan(10);
    expect((await kiln.operator.audit.verify()).ok).toBe(true);
  });
});

export type { Job };
