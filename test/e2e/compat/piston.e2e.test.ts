import { piston } from 'piston-client';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem } from '../support/kiln-system.js';

/**
 * Piston v2 at /api/v2 (issue 12, point 1): the npm `piston-client` unchanged against an operator
 * mapping (KILN_PISTON_AGENT), and raw HTTP for every field with a kiln key.
 */
describe('Piston v2 compatibility (sqlite)', () => {
  const kiln = new KilnSystem('sqlite');
  let agentKey: string;
  let agentId: string;
  let listJobs: () => Promise<{ items: { id: string; language: string; agent_id: string | null }[] }>;

  const execute = async (body: unknown, key: string | undefined = agentKey, contentType = 'application/json') => {
    const res = await fetch(`${kiln.url}/api/v2/execute`, {
      method: 'POST',
      headers: { ...(key ? { authorization: key } : {}), ...(contentType ? { 'content-type': contentType } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const t = await kiln.newTenant();
    agentId = t.agent.id;
    agentKey = (await t.admin.agents.createKey(agentId)).key;
    listJobs = () => t.admin.jobs.list({ limit: 100 }) as never;
    // The operator maps key-less Piston requests to this agent: a restart with KILN_PISTON_AGENT.
    await kiln.stopServer();
    (kiln as unknown as { serverEnvExtra: Record<string, string> }).serverEnvExtra.KILN_PISTON_AGENT = agentId;
    await kiln.startServer();
  }, 180_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('piston-client, unchanged, lists runtimes and runs code as the mapped agent, a job in /v1/jobs', async () => {
    const client = piston({ server: kiln.url });
    const runtimes = await client.runtimes();
    expect(runtimes).toEqual(expect.arrayContaining([
      expect.objectContaining({ language: 'python', aliases: expect.arrayContaining(['py', 'python3']) }),
      expect.objectContaining({ language: 'javascript', runtime: 'node', aliases: expect.arrayContaining(['js']) }),
      expect.objectContaining({ language: 'c++', runtime: 'gcc', aliases: expect.arrayContaining(['cpp']) }),
    ]));
    const result = await client.execute('python', 'import sys\nprint("hi", sys.argv[1:])');
    expect(result).toMatchObject({ language: 'python', run: { stdout: "hi ['1', '2', '3']\n", code: 0, signal: null, status: null } });
    expect(result.run.output).toBe("hi ['1', '2', '3']\n");
    const jobs = await listJobs();
    expect(jobs.items.some((j) => j.language === 'python' && j.agent_id === agentId)).toBe(true);
  });

  it('takes every field: named files in utf8, base64 and hex, stdin, args, limits, an alias and a version range', async () => {
    const { status, body } = await execute({
      language: 'py',
      version: '3.x',
      files: [
        { name: 'main.py', content: 'import sys, helper\nprint(helper.X, sys.stdin.read().strip(), sys.argv[1:], open("data.bin","rb").read())' },
        { name: 'helper.py', content: Buffer.from('X = 41 + 1\n').toString('base64'), encoding: 'base64' },
        { name: 'data.bin', content: Buffer.from([0x6b, 0x69]).toString('hex'), encoding: 'hex' },
      ],
      stdin: 'from stdin\n',
      args: ['a', 'b c'],
      compile_timeout: 5000,
      run_timeout: 5000,
      compile_cpu_time: 5000,
      run_cpu_time: 5000,
      compile_memory_limit: -1,
      run_memory_limit: 256 * 1024 * 1024,
    });
    expect(status).toBe(200);
    expect(body.language).toBe('python');
    expect(body.version).toMatch(/^3\./);
    expect(body.compile).toBeUndefined();
    expect(body.run).toMatchObject({ stdout: "42 from stdin ['a', 'b c'] b'ki'\n", stderr: '', code: 0, signal: null, message: null, status: null });
    for (const field of ['cpu_time', 'wall_time', 'memory']) expect(typeof body.run[field]).toBe('number');
    expect(body.run.memory).toBeGreaterThan(0);
  });

  it('gives a compiled language a compile and a run stage, and a compile error only a compile stage', async () => {
    const ok = await execute({ language: 'c', version: '*', files: [{ name: 'main.c', content: '#include <stdio.h>\nint main(){puts("built");return 4;}' }] });
    expect(ok.status).toBe(200);
    expect(ok.body.compile).toMatchObject({ code: 0, status: null });
    expect(ok.body.run).toMatchObject({ stdout: 'built\n', code: 4, status: 'RE', message: 'Exited with code 4' });
    const bad = await execute({ language: 'c', version: '*', files: [{ content: 'int main( {' }] });
    expect(bad.status).toBe(200);
    expect(bad.body.run).toBeUndefined();
    expect(bad.body.compile.code).not.toBe(0);
    expect(bad.body.compile.stderr).toMatch(/error/);
  });

  it('runs the compile stage under its own limits, with its own output and status', async () => {
    const warned = await execute({ language: 'c', version: '*', files: [{ content: '#warning careful\nint main(){return 0;}' }], compile_timeout: 10_000 });
    expect(warned.body.compile).toMatchObject({ code: 0, status: null, stdout: '' });
    expect(warned.body.compile.stderr).toMatch(/careful/);
    expect(warned.body.run).toMatchObject({ stdout: '', stderr: '', code: 0 });
    // A compile that never ends and holds no memory (D runs f() at compile time), so only the compile
    // timeout can stop it: a C include bomb also grows memory and may end by OOM first on a loaded machine.
    const endless = await execute({
      language: 'd',
      version: '*',
      files: [{ name: 'main.d', content: 'int f() { for (;;) {} }\nenum x = f();\nvoid main() {}\n' }],
      compile_timeout: 500,
    });
    expect(endless.body.compile).toMatchObject({ status: 'TO', signal: 'SIGKILL', code: null });
    expect(endless.body.run).toBeUndefined();
  });

  it('gives kiln\'s own job API compile_limits, bounded by the policy, and a compile result apart from the run', async () => {
    const submit = (body: unknown) =>
      fetch(`${kiln.url}/v1/jobs?wait=true`, { method: 'POST', headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const over = await submit({ language: 'c', code: 'int main(){}', compile_limits: { wall_time_ms: 3_600_000 } });
    expect(over.status).toBe(422);
    expect(await over.json()).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.compile_limits.wall_time_ms' });
    const job = await (await submit({ language: 'c', code: '#warning w\nint main(){return 5;}', compile_limits: { wall_time_ms: 10_000, cpu_time_ms: 5000, memory_bytes: 128 * 1024 * 1024 } })).json();
    expect(job).toMatchObject({ verdict: 'runtime_error', exit_status: { code: 5 }, stderr: '', compile: { verdict: 'ok', exit_status: { code: 0, signal: null } } });
    expect(job.compile.stderr).toMatch(/warning/);
    expect(job.compile.resource_usage.wall_time_ms).toBeGreaterThan(0);
    const python = await (await submit({ language: 'python', code: 'print(1)', compile_limits: { wall_time_ms: 1000 } })).json();
    expect(python.compile).toBeNull();
  });

  it('reports a timeout as TO and a signal by name as SG', async () => {
    const slow = await execute({ language: 'python', version: '*', files: [{ content: 'while True: pass' }], run_timeout: 500 });
    expect(slow.body.run).toMatchObject({ status: 'TO', code: null });
    const killed = await execute({ language: 'bash', version: '*', files: [{ content: 'kill -SEGV $$' }] });
    expect(killed.body.run).toMatchObject({ status: 'SG', signal: 'SIGSEGV', code: null });
  });

  it('refuses limits above the policy, an unknown runtime and a bad body in Piston\'s shape (400 {message})', async () => {
    const over = await execute({ language: 'python', version: '*', files: [{ content: '1' }], run_timeout: 3_600_000 });
    expect(over.status).toBe(400);
    expect(over.body).toEqual({ message: expect.stringMatching(/^run_timeout cannot exceed the configured limit of \d+ ms/) });
    const overCompile = await execute({ language: 'c', version: '*', files: [{ content: '1' }], compile_memory_limit: 8 * 1024 ** 3 });
    expect(overCompile.status).toBe(400);
    expect(overCompile.body.message).toMatch(/^compile_memory_limit cannot exceed/);
    const unknown = await execute({ language: 'brainfudge', version: '1.0.0', files: [{ content: '+' }] });
    expect(unknown).toEqual({ status: 400, body: { message: 'brainfudge-1.0.0 runtime is unknown' } });
    const noVersion = await execute({ language: 'python', version: '9.x', files: [{ content: '1' }] });
    expect(noVersion.body.message).toBe('python-9.x runtime is unknown');
    const escape = await execute({ language: 'python', version: '*', files: [{ name: '../../etc/passwd', content: 'x' }] });
    expect(escape.status).toBe(400);
    expect(escape.body.message).toMatch(/files\[0\]\.name/);
    const missing = await execute({ version: '*', files: [] });
    expect(missing.status).toBe(400);
    expect(Object.keys(missing.body)).toEqual(['message']);
    // Refused calls are audited as on /v1, with the agent as actor.
    const audit = await (await fetch(`${kiln.url}/v1/audit-events?outcome=error&limit=50`, { headers: { authorization: `Bearer ${agentKey}` } })).json();
    expect(audit.items.filter((e: any) => e.action === 'job.create' && e.actor_id === agentId).length).toBeGreaterThanOrEqual(5);
  });

  /** A Piston WebSocket session: the messages it got and how it closed. */
  const connect = (messages: unknown[], onMessage?: (m: any, ws: WebSocket) => void, key = agentKey) =>
    new Promise<{ got: any[]; code: number }>((done, fail) => {
      const ws = new WebSocket(`${kiln.url.replace('http', 'ws')}/api/v2/connect`, { headers: key ? { authorization: key } : {} });
      const got: any[] = [];
      ws.on('open', () => messages.forEach((m) => ws.send(JSON.stringify(m))));
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString());
        got.push(m);
        onMessage?.(m, ws);
      });
      ws.on('close', (code) => done({ got, code }));
      ws.on('error', fail);
    });

  it('WebSocket /api/v2/connect: runtime, stage, live data, exit, and close 4999', async () => {
    const { got, code } = await connect([{ type: 'init', language: 'python', version: '*', files: [{ content: 'print("ws", input())' }], stdin: 'in\n' }]);
    expect(code).toBe(4999);
    expect(got[0]).toMatchObject({ type: 'runtime', language: 'python' });
    expect(got[1]).toEqual({ type: 'stage', stage: 'run' });
    expect(got.filter((m) => m.type === 'data').map((m) => m.data).join('')).toBe('ws in\n');
    expect(got.at(-1)).toEqual({ type: 'exit', stage: 'run', code: 0, signal: null });
    const compiled = await connect([{ type: 'init', language: 'c', version: '*', files: [{ content: '#include <stdio.h>\nint main(){puts("c");return 2;}' }] }]);
    expect(compiled.got.map((m) => m.type === 'stage' ? `stage:${m.stage}` : m.type === 'exit' ? `exit:${m.stage}:${m.code}` : m.type)).toEqual([
      'runtime', 'stage:compile', 'exit:compile:0', 'stage:run', 'data', 'exit:run:2',
    ]);
  });

  it('WebSocket: a signal really kills the job; Piston\'s close codes for protocol errors', async () => {
    const started = Date.now();
    const { got, code } = await connect(
      [{ type: 'init', language: 'python', version: '*', files: [{ content: 'import time\nprint("up", flush=True)\ntime.sleep(60)' }] }],
      (m, ws) => {
        if (m.type === 'data') ws.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
      },
    );
    expect(code).toBe(4999);
    expect(got.at(-1)).toMatchObject({ type: 'exit', stage: 'run' });
    expect(Date.now() - started).toBeLessThan(30_000);
    const jobs = await listJobs();
    expect(jobs.items.some((j: any) => j.status === 'canceled')).toBe(true);
    expect((await connect([{ type: 'data', stream: 'stdin', data: 'x' }])).code).toBe(4003);
    const init = { type: 'init', language: 'python', version: '*', files: [{ content: 'import time; time.sleep(5)' }] };
    expect((await connect([init, init])).code).toBe(4000);
    expect((await connect([init, { type: 'data', stream: 'stdout', data: 'x' }])).code).toBe(4004);
    expect((await connect([init, { type: 'signal', signal: 'SIGNOPE' }])).code).toBe(4005);
    expect((await connect([])).code).toBe(4001);
    await expect(connect([init], undefined, 'kiln_agent_wrong')).rejects.toThrow(/401/);
  }, 60_000);

  it('WebSocket: stdin data reaches a running program, each answer before the next line is sent', async () => {
    const echo = 'import sys\nfor line in sys.stdin:\n    print("echo:" + line.strip(), flush=True)\n    if line.strip() == "bye": break';
    const lines = ['one', 'two', 'three', 'bye'];
    const answers: string[] = [];
    let out = '';
    let sent = 0;
    const { got, code } = await connect(
      // The first line follows init at once: it waits (bounded) for the job to be leased and started.
      [{ type: 'init', language: 'python', version: '*', files: [{ content: echo }] }, { type: 'data', stream: 'stdin', data: `${lines[sent++]}\n` }],
      (m, ws) => {
        if (m.type !== 'data' || m.stream !== 'stdout') return;
        out += m.data;
        // The next line goes only once the answer to the one before has come back: a true dialogue.
        while (out.includes('\n')) {
          const [line, ...rest] = out.split('\n');
          out = rest.join('\n');
          answers.push(line!);
          if (sent < lines.length) ws.send(JSON.stringify({ type: 'data', stream: 'stdin', data: `${lines[sent++]}\n` }));
        }
      },
    );
    expect(answers).toEqual(['echo:one', 'echo:two', 'echo:three', 'echo:bye']);
    expect(code).toBe(4999);
    expect(got.at(-1)).toEqual({ type: 'exit', stage: 'run', code: 0, signal: null });
    // A program that waits on stdin (Piston has no end of file) is still ended by a signal.
    const waiting = await connect(
      [{ type: 'init', language: 'python', version: '*', files: [{ content: 'import sys\nprint("ready", flush=True)\nsys.stdin.read()' }] }],
      (m, ws) => {
        if (m.type === 'data') ws.send(JSON.stringify({ type: 'signal', signal: 'SIGTERM' }));
      },
    );
    expect(waiting.code).toBe(4999);
    expect(waiting.got.at(-1)).toMatchObject({ type: 'exit', stage: 'run' });
  }, 60_000);

  it('WebSocket: a flood of stdin messages to a program that does not read is bounded: error, close, job canceled', async () => {
    const chunk = 'x'.repeat(8 * 1024);
    const { got, code } = await connect(
      [{ type: 'init', language: 'python', version: '*', files: [{ content: 'import time\nprint("up", flush=True)\ntime.sleep(60)' }] }],
      (m, ws) => {
        // 2 000 messages, 16 MB: far past what waits for the program (its pipe holds 64 KiB).
        if (m.type === 'data') for (let i = 0; i < 2000 && ws.readyState === ws.OPEN; i++) ws.send(JSON.stringify({ type: 'data', stream: 'stdin', data: chunk }));
      },
    );
    expect(code).toBe(4002);
    expect(got.find((m) => m.type === 'error')?.message).toMatch(/stdin is flooded/);
    // The newest job (ids sort by time) is the flooding one: closing the socket canceled it.
    await eventually('the flooding job is canceled', async () => (await listJobs()).items[0]!.status === 'canceled');
    // The server still answers.
    expect((await execute({ language: 'bash', version: '*', files: [{ content: 'echo alive' }] })).body.run.stdout).toBe('alive\n');
  }, 60_000);

  it('accepts a body without a JSON content type; a wrong key is 401 even where key-less calls are mapped', async () => {
    const plain = await execute({ language: 'bash', version: '*', files: [{ content: 'echo plain' }] }, agentKey, '');
    expect(plain.body.run.stdout).toBe('plain\n');
    const form = await execute({ language: 'bash', version: '*', files: [{ content: 'echo form' }] }, agentKey, 'application/x-www-form-urlencoded');
    expect(form.body.run.stdout).toBe('form\n');
    const wrong = await execute({ language: 'bash', version: '*', files: [{ content: 'echo x' }] }, 'kiln_agent_nope');
    expect(wrong.status).toBe(401);
    expect(Object.keys(wrong.body)).toEqual(['message']);
  });
});
