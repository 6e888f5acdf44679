import { buildZip } from '../../../packages/server/src/services/compat/judge0/zip-testing.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem, type DbKind } from '../support/kiln-system.js';
import { Judge0Client } from './judge0-client.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** Judge0 CE at a prefix the operator chose (issue 12, point 2), raw HTTP for every field and status. */
describe.each<DbKind>(['sqlite', 'postgres'])('Judge0 CE compatibility (%s)', (db) => {
  const kiln = new KilnSystem(db, { KILN_JUDGE0_PREFIX: '/judge', KILN_JUDGE0_CALLBACK_HOSTS: 'localhost' });
  let judge: Judge0Client;
  let other: Judge0Client;
  let listJobs: () => Promise<{ items: { id: string }[] }>;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const t = await kiln.newTenant();
    judge = new Judge0Client(`${kiln.url}/judge`, (await t.admin.agents.createKey(t.agent.id)).key);
    const u = await kiln.newTenant();
    other = new Judge0Client(`${kiln.url}/judge`, (await u.admin.agents.createKey(u.agent.id)).key);
    listJobs = () => t.admin.jobs.list({ limit: 200 }) as never;
  }, 180_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('answers statuses, about, and languages with Judge0 CE ids for what the fleet offers', async () => {
    const statuses = await judge.statuses();
    expect(statuses.body).toHaveLength(14);
    expect(statuses.body[3]).toEqual({ id: 4, description: 'Wrong Answer' });
    expect((await judge.about()).body.version).toEqual(expect.any(String));
    const languages = (await judge.languages()).body as { id: number; name: string }[];
    const ids = languages.map((l) => l.id);
    for (const id of [71, 63, 50, 54, 62]) expect(ids).toContain(id);
    expect(languages.find((l) => l.id === 71)!.name).toMatch(/^Python \(3\.\d+\.\d+\)$/);
    const one = await fetch(`${kiln.url}/judge/languages/54`, { headers: { 'X-Auth-Token': (judge as any).authToken } });
    expect(await one.json()).toMatchObject({ id: 54, name: expect.stringMatching(/^C\+\+ \(GCC /), is_archived: false });
    const missing = await fetch(`${kiln.url}/judge/languages/9999`, { headers: { 'X-Auth-Token': (judge as any).authToken } });
    expect(missing.status).toBe(404);
  });

  it('gives a batch with expected_output the statuses Judge0 would', async () => {
    const cases: [string, { language_id: number; source_code: string; [k: string]: unknown }][] = [
      ['Accepted', { language_id: 71, source_code: 'print(input())', stdin: '42', expected_output: '42  \n\n' }],
      ['Wrong Answer', { language_id: 71, source_code: 'print(41)', expected_output: '42' }],
      ['Time Limit Exceeded', { language_id: 71, source_code: 'while True: pass', cpu_time_limit: 0.5 }],
      ['Compilation Error', { language_id: 50, source_code: 'int main( {' }],
      ['Runtime Error (SIGSEGV)', { language_id: 50, source_code: 'int main(){ volatile int *p = 0; return *p; }' }],
      ['Runtime Error (SIGXFSZ)', { language_id: 46, source_code: 'head -c 200000 /dev/zero > big', max_file_size: 64 }],
      ['Runtime Error (SIGFPE)', { language_id: 50, source_code: '#include <signal.h>\nint main(){ raise(SIGFPE); }' }],
      ['Runtime Error (SIGABRT)', { language_id: 50, source_code: '#include <stdlib.h>\nint main(){ abort(); }' }],
      ['Runtime Error (NZEC)', { language_id: 71, source_code: 'import sys; sys.exit(3)' }],
      ['Runtime Error (Other)', { language_id: 46, source_code: 'kill -TERM $$' }],
    ];
    const created = await judge.submitBatch(cases.map(([, s]) => s));
    expect(created.status).toBe(201);
    const tokens = (created.body as { token: string }[]).map((c) => c.token);
    expect(tokens.every((t) => typeof t === 'string')).toBe(true);
    for (const token of tokens) await judge.waitFor(token);
    const batch = await judge.getBatch(tokens, '&fields=token,status,exit_code,exit_signal,message,compile_output,stdout');
    const got = (batch.body.submissions as { status: { description: string } }[]).map((s) => s.status.description);
    expect(got).toEqual(cases.map(([status]) => status));
    const [accepted, , tle, compile, segv, , , , nzec] = batch.body.submissions;
    expect(accepted).toMatchObject({ stdout: '42\n', exit_code: 0 });
    expect(tle.message).toBe('Time limit exceeded');
    expect(compile.compile_output).toMatch(/error/);
    expect(segv).toMatchObject({ exit_signal: 11, message: 'Caught fatal signal 11' });
    expect(nzec).toMatchObject({ exit_code: 3, message: 'Exited with error status 3' });
    // Each submission is a kiln job of the tenant.
    expect((await listJobs()).items.length).toBeGreaterThanOrEqual(cases.length);
  });

  it('takes every field: base64, wait, fields, arguments, stderr redirect, limits, runs and additional files', async () => {
    const zip = buildZip([{ name: 'helper.py', content: 'GREETING = "hi"\n' }]).toString('base64');
    const res = await judge.submit(
      {
        language_id: 71,
        source_code: b64('import sys, helper\nprint(helper.GREETING, sys.argv[1:], input())\nprint("warn", file=sys.stderr)'),
        stdin: b64('there'),
        expected_output: b64("hi ['a', 'b c'] there\nwarn\n"),
        command_line_arguments: 'a "b c"',
        redirect_stderr_to_stdout: true,
        cpu_time_limit: 2,
        cpu_extra_time: 0.5,
        wall_time_limit: 5,
        memory_limit: 128000,
        stack_limit: 64000,
        max_processes_and_or_threads: 32,
        max_file_size: 1024,
        number_of_runs: 2,
        enable_network: false,
        additional_files: zip,
      },
      '?base64_encoded=true&wait=true&fields=*',
    );
    expect(res.status).toBe(201);
    const s = res.body;
    expect({ status: s.status, stdout: Buffer.from(s.stdout ?? '', 'base64').toString(), message: s.message }).toMatchObject({ status: { id: 3, description: 'Accepted' } });
    expect(Buffer.from(s.stdout, 'base64').toString()).toBe("hi ['a', 'b c'] there\nwarn\n");
    expect(s.stderr).toBeNull();
    expect(s).toMatchObject({ language_id: 71, number_of_runs: 2, cpu_time_limit: 2, memory_limit: 128000, language: { id: 71 } });
    expect(s.time).toMatch(/^\d+\.\d{3}$/);
    expect(s.wall_time).toMatch(/^\d+\.\d{3}$/);
    expect(s.memory).toBeGreaterThan(0);
    expect(Buffer.from(s.source_code, 'base64').toString()).toContain('helper.GREETING');
    // Default fields without `fields`; plain text without base64.
    const plain = await judge.get(s.token);
    expect(Object.keys(plain.body).sort()).toEqual(['compile_output', 'memory', 'message', 'status', 'stderr', 'stdout', 'time', 'token']);
    expect(plain.body.stdout).toBe("hi ['a', 'b c'] there\nwarn\n");
  });

  it('refuses bad input in Judge0\'s shape (422 {field: [...]}) and changes nothing', async () => {
    const before = (await listJobs()).items.length;
    const refusals: [Record<string, unknown>, string][] = [
      [{ language_id: 71 }, 'source_code'],
      [{ language_id: 9999, source_code: 'x' }, 'language_id'],
      [{ language_id: 71, source_code: 'x', cpu_time_limit: 3000 }, 'cpu_time_limit'],
      [{ language_id: 71, source_code: 'x', memory_limit: 64 * 1024 * 1024 }, 'memory_limit'],
      [{ language_id: 71, source_code: 'x', enable_network: true }, 'enable_network'],
      [{ language_id: 71, source_code: 'x', callback_url: 'http://elsewhere.example/cb' }, 'callback_url'],
      [{ language_id: 71, source_code: 'x', additional_files: buildZip([{ name: 'l', kind: 'symlink', content: '/etc' }]).toString('base64') }, 'additional_files'],
      [{ language_id: 71, source_code: 'x', compiler_options: '-O2; rm -rf /' }, 'compiler_options'],
      [{ language_id: 71, source_code: 'x', number_of_runs: 1000 }, 'number_of_runs'],
    ];
    for (const [body, field] of refusals) {
      const res = await judge.submit(body as never);
      expect(res.status, field).toBe(422);
      expect(Object.keys(res.body), field).toEqual([field]);
      expect(res.body[field][0], field).toEqual(expect.any(String));
    }
    expect((await listJobs()).items.length).toBe(before);
    const badBase64 = await judge.submit({ language_id: 71, source_code: '***' }, '?base64_encoded=true');
    expect(badBase64.status).toBe(422);
  });

  it('answers another tenant\'s token 404, deletes an ended submission, and never calls back a private address', async () => {
    const { body } = await judge.submit({ language_id: 46, source_code: 'printf "\\377"' }, '?wait=true');
    const token = body.token ?? (await judge.submit({ language_id: 46, source_code: 'printf "\\377"' })).body.token;
    await judge.waitFor(token, '?base64_encoded=true');
    expect((await other.get(token)).status).toBe(404);
    expect((await other.delete(token)).status).toBe(404);
    // Output that is not UTF-8 asks for base64.
    const raw = await judge.get(token);
    expect(raw.status).toBe(400);
    expect(raw.body.error).toMatch(/base64_encoded=true/);
    expect((await judge.get(token, '?base64_encoded=true')).body.stdout).toBe(Buffer.from([0xff]).toString('base64'));
    const deleted = await fetch(`${kiln.url}/judge/submissions/${token}?base64_encoded=true`, {
      method: 'DELETE',
      headers: { 'X-Auth-Token': (judge as any).authToken },
    });
    expect(deleted.status).toBe(200);
    expect((await judge.get(token)).status).toBe(404);
    // localhost is an allowed host here, but it resolves to loopback: the callback is never sent.
    let reached = 0;
    const { createServer } = await import('node:http');
    const hook = createServer((_q, r) => {
      reached += 1;
      r.end();
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    const cb = await judge.submit({ language_id: 71, source_code: 'print(1)', callback_url: `http://localhost:${port}/done` }, '?wait=true');
    expect(cb.status).toBe(201);
    await new Promise((r) => setTimeout(r, 500));
    hook.close();
    expect(reached).toBe(0);
    // Without a key (and no KILN_JUDGE0_AGENT) the face is closed.
    const anonymous = await new Judge0Client(`${kiln.url}/judge`).languages();
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toEqual(expect.any(String));
  });
});
