import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DEFAULT_RULESET } from '@kiln/core';
import { CommandExitError, Sandbox } from '@kiln/sdk';
import WebSocket from 'ws';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

const CLI = join(import.meta.dirname, '../../packages/cli/bin/kiln.js');

/** A tenant with its admin key, an agent and the agent's key (raw keys: sessions go through fetch). */
async function keyedTenant(kiln: KilnSystem) {
  const tenant = await kiln.operator.tenants.create({ name: `t-${Math.random().toString(36).slice(2, 8)}` });
  const tenantKey = (await kiln.operator.tenants.createKey(tenant.id)).key;
  const admin = kiln.client(tenantKey);
  const agent = await admin.agents.create({ name: 'agent-1' });
  const agentKey = (await admin.agents.createKey(agent.id)).key;
  return { tenant, tenantKey, admin, agent, agentKey };
}

/** A tiny JSON client over fetch for the session routes (the SDK has no sessions yet). */
function api(url: string, key: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
}

/**
 * Issue 8 with the real processes: a session's life through the API onto a real runner's persistent
 * sandbox, steps in order under concurrent submits, a background server reached from a later step,
 * kill, keepalive, max_active and ttl ceilings, other tenants' and agents' 404, runner loss, and a
 * control-plane crash that ends nothing; the audit verifies after all of it.
 */
describe.each<DbKind>(['sqlite', 'postgres'])('sessions end to end (%s)', (db) => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('lives a full life: steps 1..50 with no gap, background server, kill, keepalive, limits, isolation, crash of the server', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'sess', capacity: 2 });
    const { admin, tenant, agent, agentKey } = await keyedTenant(kiln);
    const call = api(kiln.url, agentKey);

    const created = await call('POST', '/v1/sessions', { ttl_seconds: 600, env: { GREETING: 'hi' }, metadata: { purpose: 'e2e' } });
    expect(created.status).toBe(201);
    const session = created.body;
    expect(session).toMatchObject({ status: 'active', agent_id: agent.id, ttl_seconds: 600, metadata: { purpose: 'e2e' }, env: { GREETING: 'hi' } });
    expect(session.runner_id).toMatch(/^run_/);
    expect(session.sandbox_id).toMatch(/^sbx_/);

    const first = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'echo "$GREETING" > note; cat note; echo err >&2' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ sequence: 1, status: 'succeeded', verdict: 'ok', stdout: 'hi\n', stderr: 'err\n', exit_status: { code: 0 } });
    const second = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] });
    expect(second.body).toMatchObject({ sequence: 2, stdout: 'hi\n' });
    const failing = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'exit 3' });
    expect(failing.body).toMatchObject({ sequence: 3, status: 'failed', exit_status: { code: 3 } });
    const withStdin = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'tr a-z A-Z', stdin: 'shout\n' });
    expect(withStdin.body).toMatchObject({ sequence: 4, stdout: 'SHOUT\n' });

    // stdin to a running (background) step: written in two parts, then closed; the step ends with it.
    const reader = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'cat; echo done', background: true });
    expect(reader.body).toMatchObject({ sequence: 5, status: 'running' });
    expect((await call('POST', `/v1/sessions/${session.id}/steps/5/stdin`, { data: 'line one\n' })).body).toEqual({ written_bytes: 9 });
    await call('POST', `/v1/sessions/${session.id}/steps/5/stdin`, { data: 'line two\n', eof: true });
    const read = await eventually('the stdin step to end', async () => {
      const r = await call('GET', `/v1/sessions/${session.id}/steps/5`);
      return r.body.status !== 'running' ? r.body : undefined;
    });
    expect(read).toMatchObject({ status: 'succeeded', stdout: 'line one\nline two\ndone\n' });
    expect((await call('POST', `/v1/sessions/${session.id}/steps/5/stdin`, { data: 'late' })).status).toBe(409);

    // 50 concurrent submits: 6..55, no gap, no repeat.
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call('POST', `/v1/sessions/${session.id}/steps`, { command: ['echo', String(i)] })),
    );
    expect(many.every((r) => r.status === 201 && r.body.status === 'succeeded')).toBe(true);
    expect(many.map((r) => r.body.sequence).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 6));

    // A background server started by a step keeps running; a later step reaches it.
    const server = await call('POST', `/v1/sessions/${session.id}/steps`, {
      command: 'mkdir -p site && echo served > site/index.html && cd site && exec python3 -m http.server 8765 --bind 127.0.0.1',
      background: true,
    });
    expect(server.body).toMatchObject({ status: 'running', background: true });
    const fetched = await eventually('the background server to answer', async () => {
      const r = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'curl -s http://127.0.0.1:8765/index.html' });
      return r.body.stdout === 'served\n' ? r.body : undefined;
    });
    expect(fetched.status).toBe('succeeded');

    // Kill a running step: it ends canceled, the session lives on; a per-step timeout kills only the step.
    const sleeper = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 60', background: true });
    await call('POST', `/v1/sessions/${session.id}/steps/${sleeper.body.sequence}/kill`, {});
    const killed = await eventually('the killed step to end', async () => {
      const r = await call('GET', `/v1/sessions/${session.id}/steps/${sleeper.body.sequence}`);
      return r.body.status !== 'running' ? r.body : undefined;
    });
    expect(killed.status).toBe('canceled');
    const timedOut = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 30', timeout_ms: 300 });
    expect(timedOut.body).toMatchObject({ status: 'failed', verdict: 'time_limit' });
    const alive = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] });
    expect(alive.body.stdout).toBe('hi\n');

    // The transcript, and the SSE of an ended step.
    const transcript = await call('GET', `/v1/sessions/${session.id}/steps?limit=200`);
    const sequences = transcript.body.items.map((s: { sequence: number }) => s.sequence);
    expect(sequences).toEqual(Array.from({ length: sequences.length }, (_, i) => i + 1));
    const sse = await fetch(`${kiln.url}/v1/sessions/${session.id}/steps/1/events`, { headers: { authorization: `Bearer ${agentKey}` } });
    const sseText = await sse.text();
    expect(sseText).toContain('event: end');
    expect(sseText).toContain('hi\\n');

    // Keepalive moves expires_at; past the ceiling is 422 naming the field and ceiling.
    const kept = await call('POST', `/v1/sessions/${session.id}/keepalive`, { ttl_seconds: 900 });
    expect(kept.status).toBe(200);
    expect(Date.parse(kept.body.expires_at)).toBeGreaterThan(Date.parse(session.expires_at));
    const tooLong = await call('POST', `/v1/sessions/${session.id}/keepalive`, { ttl_seconds: 999_999 });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ttl_seconds', ceiling: 3600 });
    const tooLongCreate = await call('POST', '/v1/sessions', { ttl_seconds: 7200 });
    expect(tooLongCreate.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ttl_seconds', ceiling: 3600 });

    // Another tenant's key, and another agent of the same tenant, see 404.
    const otherKey = (await keyedTenant(kiln)).agentKey;
    expect((await api(kiln.url, otherKey)('GET', `/v1/sessions/${session.id}`)).status).toBe(404);
    expect((await api(kiln.url, otherKey)('POST', `/v1/sessions/${session.id}/steps`, { command: 'id' })).status).toBe(404);
    const agent2 = await admin.agents.create({ name: 'agent-2' });
    const agent2Key = (await admin.agents.createKey(agent2.id)).key;
    expect((await api(kiln.url, agent2Key)('GET', `/v1/sessions/${session.id}`)).status).toBe(404);

    // The control plane crashes (with a step in flight) and comes back: the session still runs steps,
    // its files intact; the step the dead process drove ends failed, not running forever.
    const inFlight = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 600', background: true });
    expect(inFlight.body.status).toBe('running');
    await kiln.killServer();
    await kiln.startServer();
    const afterCrash = await eventually('the session to answer after the restart', async () => {
      const r = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] }).catch(() => undefined);
      return r?.status === 201 ? r.body : undefined;
    });
    expect(afterCrash).toMatchObject({ status: 'succeeded', stdout: 'hi\n' });
    const orphan = await eventually('the orphaned step to fail', async () => {
      const r = await call('GET', `/v1/sessions/${session.id}/steps/${inFlight.body.sequence}`);
      return r.body.status !== 'running' ? r.body : undefined;
    }, 60_000);
    expect(orphan).toMatchObject({ status: 'failed', verdict: 'system_error', error: expect.stringMatching(/replica that ran this step stopped/) });

    // Delete: terminated (deleted), idempotent; steps then refused.
    const deleted = await call('DELETE', `/v1/sessions/${session.id}`);
    expect(deleted.body).toMatchObject({ status: 'terminated', reason: 'deleted' });
    expect((await call('DELETE', `/v1/sessions/${session.id}`)).body).toMatchObject({ status: 'terminated', reason: 'deleted' });
    expect((await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'id' })).status).toBe(409);
    const sandbox = await eventually('the sandbox to be destroyed', async () => {
      const [s] = (await kiln.operator.sandboxes.list({ session_id: session.id })).items;
      return s?.status === 'terminated' ? s : undefined;
    });
    expect(sandbox.kind).toBe('session');

    const audit = await admin.audit.list({ limit: 200 });
    const actions = new Set(audit.items.map((e: { action: string }) => e.action));
    for (const a of ['session.create', 'session.step', 'session.keepalive', 'session.step_kill', 'session.terminate']) expect(actions).toContain(a);
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 240_000);

  it('files: 100 MiB up and down with its checksum, list, mkdir, rename, remove; escapes, planted links and a full disk refused', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'files', capacity: 1 });
    const { tenantKey, agentKey } = await keyedTenant(kiln);
    const call = api(kiln.url, agentKey);
    const session = (await call('POST', '/v1/sessions', {})).body;
    const put = (path: string, body: Buffer, key = agentKey) =>
      fetch(`${kiln.url}/v1/sessions/${session.id}/files?path=${encodeURIComponent(path)}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
        body,
      });
    const get = (path: string) =>
      fetch(`${kiln.url}/v1/sessions/${session.id}/files?path=${encodeURIComponent(path)}`, { headers: { authorization: `Bearer ${agentKey}` } });

    const big = randomBytes(100 * 1024 * 1024);
    const digest = createHash('sha256').update(big).digest('hex');
    const up = await put('data/big.bin', big);
    expect(up.status).toBe(201);
    expect(await up.json()).toEqual({ path: 'data/big.bin', size_bytes: big.length });
    const down = await get('data/big.bin');
    expect(down.status).toBe(200);
    expect(createHash('sha256').update(Buffer.from(await down.arrayBuffer())).digest('hex')).toBe(digest);
    const inside = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sha256sum data/big.bin | cut -d" " -f1; stat -c %u data/big.bin' });
    expect(inside.body.stdout.split('\n')[0]).toBe(digest);
    expect(inside.body.stdout.split('\n')[1]).toBe('1000');

    expect((await call('POST', `/v1/sessions/${session.id}/files/mkdir`, { path: 'a/b/c' })).status).toBe(204);
    expect((await call('POST', `/v1/sessions/${session.id}/files/rename`, { from: 'data/big.bin', to: 'a/b/c/moved.bin' })).status).toBe(204);
    const listing = await call('GET', `/v1/sessions/${session.id}/files/list?path=a/b/c`);
    expect(listing.body.items).toEqual([
      expect.objectContaining({ name: 'moved.bin', type: 'file', size_bytes: big.length, mode: 0o644 }),
    ]);
    expect((await call('DELETE', `/v1/sessions/${session.id}/files?path=a`)).status).toBe(204);
    expect((await call('GET', `/v1/sessions/${session.id}/files/list`)).body.items.map((e: { name: string }) => e.name).sort()).toEqual(['data']);
    expect((await get('a/b/c/moved.bin')).status).toBe(404);

    // Escapes: `..`, absolute paths, and links the sandbox planted, for every operation.
    await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'ln -s /etc etc-link && ln -s /etc/passwd passwd-link && ln -s / root-link' });
    for (const path of ['../escape', '/etc/passwd', 'etc-link/passwd', 'passwd-link', 'root-link/tmp/x', 'data/../../x']) {
      expect((await get(path)).status, `GET ${path}`).toBe(400);
      expect((await put(path, Buffer.from('x'))).status, `PUT ${path}`).toBe(400);
    }
    expect((await call('POST', `/v1/sessions/${session.id}/files/mkdir`, { path: 'etc-link/new' })).status).toBe(400);
    expect((await call('POST', `/v1/sessions/${session.id}/files/rename`, { from: 'passwd-link', to: 'root-link/x' })).status).toBe(400);
    expect((await call('GET', `/v1/sessions/${session.id}/files/list?path=etc-link`)).status).toBe(400);
    // Removing a link removes the link, never its target.
    expect((await call('DELETE', `/v1/sessions/${session.id}/files?path=passwd-link`)).status).toBe(204);
    expect((await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'test -f /etc/passwd && echo kept' })).body.stdout).toBe('kept\n');
    // Raw bytes only: a JSON body is 415.
    const json = await fetch(`${kiln.url}/v1/sessions/${session.id}/files?path=x.json`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body: '"x"',
    });
    expect(json.status).toBe(415);

    // A write over the policy's disk_bytes fails clearly and leaves no partial file.
    const admin = api(kiln.url, tenantKey);
    const small = await admin('POST', '/v1/policies', { name: 'small-disk', ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, disk_bytes: 8 * 1024 * 1024 } } });
    const tiny = (await call('POST', '/v1/sessions', { policy_id: small.body.id })).body;
    // Refused before the upload was all read: the answer closes the connection, so the next call (here
    // on the same pooled connection, a few times over) is never reset by the upload's unread bytes.
    for (let i = 0; i < 3; i++) {
      const over = await fetch(`${kiln.url}/v1/sessions/${tiny.id}/files?path=too-big.bin`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/octet-stream' },
        body: randomBytes(16 * 1024 * 1024),
      });
      expect(over.status).toBe(413);
      expect(over.headers.get('connection')).toBe('close');
      expect((await over.json()).detail).toContain('disk_bytes');
      expect((await call('GET', `/v1/sessions/${tiny.id}/files/list`)).body.items).toEqual([]);
    }
  }, 240_000);

  it('the SDK, E2B-shaped: create, commands (streamed, background, stdin, exit errors), files, setTimeout, connect, list, kill', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'sdk', capacity: 1 });
    const { agentKey } = await keyedTenant(kiln);
    const options = { url: kiln.url, apiKey: agentKey };
    const sbx = await Sandbox.create({ ...options, timeoutMs: 300_000, envs: { WHO: 'sdk' }, metadata: { via: 'sdk' } });
    expect((await sbx.getInfo()).metadata).toEqual({ via: 'sdk' });
    expect(await sbx.commands.run('echo "hello $WHO"')).toMatchObject({ exitCode: 0, stdout: 'hello sdk\n' });
    // Past the 64 KiB kept inline, the whole output comes from the step's stdout artifact.
    expect((await sbx.commands.run('head -c 100000 /dev/zero | tr "\\0" b')).stdout).toBe('b'.repeat(100_000));
    const failure = await sbx.commands.run('echo bad >&2; exit 4').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CommandExitError);
    expect(failure).toMatchObject({ exitCode: 4, stderr: 'bad\n' });
    const seen: string[] = [];
    const streamed = await sbx.commands.run('for i in 1 2 3; do echo $i; sleep 0.1; done', { onStdout: (d) => seen.push(d) });
    expect(seen.join('')).toBe('1\n2\n3\n');
    expect(streamed.stdout).toBe('1\n2\n3\n');
    const bg = await sbx.commands.run('read line; echo "got $line"', { background: true });
    await bg.sendStdin('ping\n', { eof: true });
    const waited = await bg.wait().catch((e: CommandExitError) => e.result);
    expect(waited.step.error ?? null).toBeNull();
    expect(waited.stdout).toBe('got ping\n');

    await sbx.files.write('notes/a.txt', 'alpha');
    await sbx.files.write('notes/b.bin', Readable.from([Buffer.from('be'), Buffer.from('ta')]));
    expect(await sbx.files.read('notes/a.txt')).toBe('alpha');
    const chunks: Buffer[] = [];
    for await (const c of await sbx.files.read('notes/b.bin', { format: 'stream' })) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('beta');
    expect((await sbx.files.list('notes')).map((e) => e.path).sort()).toEqual(['notes/a.txt', 'notes/b.bin']);
    await sbx.files.makeDir('archive');
    await sbx.files.rename('notes/a.txt', 'archive/a.txt');
    expect(await sbx.files.exists('archive/a.txt')).toBe(true);
    expect(await sbx.files.exists('notes/a.txt')).toBe(false);
    await sbx.files.remove('archive');
    expect(await sbx.files.exists('archive')).toBe(false);

    const before = (await sbx.getInfo()).expires_at;
    await sbx.setTimeout(600_000);
    expect(Date.parse((await sbx.getInfo()).expires_at)).toBeGreaterThan(Date.parse(before));
    // The CLI: exec streams and exits with the command's code; cp both ways.
    const cliWith = (input: string | undefined, ...args: string[]) =>
      new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_URL: kiln.url, KILN_API_KEY: agentKey } });
        let stdout = '';
        child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        // What the CLI says on stderr shows beside a failure (vitest labels it with the test).
        child.stderr.pipe(process.stderr);
        child.on('close', (code) => resolve({ code, stdout }));
        if (input !== undefined) child.stdin.end(input);
      });
    const cli = (...args: string[]) => cliWith(undefined, ...args);
    // create prints the id; shell takes its input (a pipe here, a terminal for a person) and exits with the shell's code; kill ends it.
    const made = await cli('sandbox', 'create', '--timeout', '120');
    expect(made.code).toBe(0);
    const madeId = made.stdout.trim();
    expect((await Sandbox.connect(madeId, options).then((x) => x.getInfo())).status).toBe('active');
    const shell = await cliWith('echo "in-$((40 + 2))"; exit 4\n', 'shell', madeId);
    expect(shell.code).toBe(4);
    expect(shell.stdout).toContain('in-42');
    expect((await cli('sandbox', 'kill', madeId)).code).toBe(0);
    expect((await Sandbox.connect(madeId, options).then((x) => x.getInfo())).status).toBe('terminated');
    expect(await cli('sandbox', 'exec', sbx.sandboxId, '--', 'sh', '-c', 'echo from-cli; exit 3')).toEqual({ code: 3, stdout: 'from-cli\n' });
    const local = join(kiln.dir, 'copied.txt');
    expect((await cli('sandbox', 'cp', `${sbx.sandboxId}:notes/b.bin`, local)).code).toBe(0);
    expect(readFileSync(local, 'utf8')).toBe('beta');
    expect((await cli('sandbox', 'cp', local, `${sbx.sandboxId}:back.txt`)).code).toBe(0);
    expect(await sbx.files.read('back.txt')).toBe('beta');
    expect((await cli('sandbox', 'list')).stdout).toContain(sbx.sandboxId);

    const again = await Sandbox.connect(sbx.sandboxId, options);
    expect((await again.commands.run(['cat', 'notes/b.bin'])).stdout).toBe('beta');
    expect((await Sandbox.list(options)).map((s) => s.id)).toContain(sbx.sandboxId);
    await sbx.kill();
    expect(await again.isRunning()).toBe(false);
    expect((await Sandbox.list(options)).map((s) => s.id)).not.toContain(sbx.sandboxId);
  }, 180_000);

  it('step artifacts: stdout and stderr whole (past the inline 64 KiB), collected files, policy and quota refusals, agents see only their own', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'artifacts', capacity: 1 });
    const { tenant, tenantKey, agentKey } = await keyedTenant(kiln);
    const other = await kiln.client(tenantKey).agents.create({ name: 'agent-2' });
    const otherKey = (await kiln.client(tenantKey).agents.createKey(other.id)).key;
    const call = api(kiln.url, agentKey);
    const admin = api(kiln.url, tenantKey);
    const policy = await admin('POST', '/v1/policies', {
      name: 'small-artifacts',
      ruleset: { ...DEFAULT_RULESET, artifacts: { max_count: 2, max_bytes: 4096, max_total_bytes: 8192 } },
    });
    const session = (await call('POST', '/v1/sessions', { policy_id: policy.body.id })).body;
    const step = await call('POST', `/v1/sessions/${session.id}/steps`, {
      // 200 000 bytes of stdout, a line of stderr; three small files (one over the count), one too large.
      command: 'head -c 200000 /dev/zero | tr "\\0" a; echo oops >&2; mkdir -p out; echo one > out/1.txt; echo two > out/2.txt; echo three > out/3.txt; head -c 5000 /dev/zero > out/big.txt; ln -s /etc/passwd out/link.txt',
      collect: ['out/*.txt'],
    });
    expect(step.status).toBe(201);
    expect(step.body.status).toBe('succeeded');
    expect(step.body.stdout).toHaveLength(64 * 1024);
    const refs = step.body.output_refs;
    expect(refs.artifacts).toHaveLength(2);
    expect(step.body.rejected_artifacts.map((r: { name: string }) => r.name).sort()).toEqual(['out/3.txt', 'out/big.txt']);
    const download = async (id: string, key = agentKey) => {
      const res = await fetch(`${kiln.url}/v1/artifacts/${id}/content`, { headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, checksum: res.headers.get('x-kiln-checksum'), body: Buffer.from(await res.arrayBuffer()) };
    };
    const out = await download(refs.stdout);
    expect(out.body.toString()).toBe('a'.repeat(200_000));
    expect(out.checksum).toBe(`sha256:${createHash('sha256').update(out.body).digest('hex')}`);
    expect((await download(refs.stderr)).body.toString()).toBe('oops\n');
    const listed = await call('GET', `/v1/artifacts?owner_type=session_step&owner_id=${step.body.id}`);
    expect(listed.body.items.map((a: { name: string }) => a.name).sort()).toEqual(['out/1.txt', 'out/2.txt', 'stderr', 'stdout']);
    expect(listed.body.items.every((a: { owner_type: string }) => a.owner_type === 'session_step')).toBe(true);
    expect((await download(refs.artifacts[0])).body.toString()).toBe('one\n');
    // The persisted transcript has the same references; another agent of the tenant sees none of it.
    expect((await call('GET', `/v1/sessions/${session.id}/steps/1`)).body.output_refs).toEqual(refs);
    expect((await download(refs.stdout, otherKey)).status).toBe(404);
    expect((await api(kiln.url, otherKey)('GET', `/v1/artifacts?owner_type=session_step&owner_id=${step.body.id}`)).body.items).toEqual([]);
    expect((await download(refs.stdout, tenantKey)).status).toBe(200);

    // Past the tenant's artifact storage quota: the step still ends, its outputs refused with the reason.
    await kiln.operator.tenants.setQuota(tenant.id, { artifact_storage_bytes: 300_000 });
    const over = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'head -c 250000 /dev/zero' });
    expect(over.body, JSON.stringify(over.body)).toMatchObject({ status: 'succeeded' });
    expect(over.body.output_refs.stdout).toBeNull();
    expect(over.body.rejected_artifacts).toEqual([expect.objectContaining({ name: 'stdout', size_bytes: 250_000, reason: expect.stringMatching(/artifact storage quota/) })]);
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 120_000);

  it('memory: sessions hold the runner\'s memory budget; a full runner is passed over, a full zone refused clearly, an ended session frees its room', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const MiB = 1024 * 1024;
    // Sandboxes of 128 MiB: a 300 MiB budget holds two, a 600 MiB one four.
    const budget = (mib: number) => ({ KILN_RUNNER_MEMORY_BUDGET_BYTES: String(mib * MiB) });
    await kiln.startRunner({ name: 'full-a', zone: 'z1', capacity: 1, env: budget(300) });
    await kiln.startRunner({ name: 'full-b', zone: 'z1', capacity: 1, env: budget(600) });
    await kiln.startRunner({ name: 'spare', zone: 'z2', capacity: 1, env: budget(300) });
    const { tenant, tenantKey, agentKey } = await keyedTenant(kiln);
    const policy = await api(kiln.url, tenantKey)('POST', '/v1/policies', {
      name: 'mid-memory',
      ruleset: { ...DEFAULT_RULESET, limits: { ...DEFAULT_RULESET.limits, memory_bytes: 128 * MiB }, sessions: { ...DEFAULT_RULESET.sessions, max_active: 10 } },
    });
    const call = api(kiln.url, agentKey);
    const created = [];
    // Placement spreads by session count, so once full-a's memory is taken it is passed over for full-b.
    for (let i = 0; i < 6; i++) created.push(await call('POST', '/v1/sessions', { policy_id: policy.body.id, zone: 'z1' }));
    expect(created.map((c) => c.status)).toEqual([201, 201, 201, 201, 201, 201]);
    const runnerIds = Object.fromEntries((await kiln.operator.runners.list({ limit: 10 })).items.map((r) => [r.name, r.id]));
    const count = (name: string) => created.filter((c) => c.body.runner_id === runnerIds[name]).length;
    expect([count('full-a'), count('full-b')]).toEqual([2, 4]);
    const moves = (await kiln.operator.audit.list({ tenant_id: tenant.id, action: 'session.place', limit: 50 })).items;
    expect(moves.length).toBeGreaterThan(0);
    expect(moves[0]!.details).toMatchObject({ from_runner_id: runnerIds['full-a'], runner_id: runnerIds['full-b'], reason: 'no_session_capacity' });
    const refused = await call('POST', '/v1/sessions', { policy_id: policy.body.id, zone: 'z1' });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 'RATE_LIMITED', reason: 'no_session_capacity', field: 'body.zone' });
    expect(refused.body.detail).toMatch(/zone z1[\s\S]*memory budget/);
    // Another zone has room; the full zone has room again once a session ends.
    const elsewhere = await call('POST', '/v1/sessions', { policy_id: policy.body.id, zone: 'z2' });
    expect(elsewhere.status).toBe(201);
    expect(elsewhere.body.runner_id).toBe(runnerIds['spare']);
    expect((await call('DELETE', `/v1/sessions/${created[0]!.body.id}`)).status).toBe(200);
    const again = await call('POST', '/v1/sessions', { policy_id: policy.body.id, zone: 'z1' });
    expect(again.status).toBe(201);
    expect(again.body.runner_id).toBe(created[0]!.body.runner_id);
    expect((await call('POST', `/v1/sessions/${again.body.id}/steps`, { command: 'echo placed' })).body.stdout).toBe('placed\n');
  }, 180_000);

  it('terminal: a shell on a pseudo-terminal over a WebSocket, input, resize, the exit code; refused without a key', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'pty', capacity: 1 });
    const { agentKey } = await keyedTenant(kiln);
    const session = (await api(kiln.url, agentKey)('POST', '/v1/sessions', {})).body;
    const url = `${kiln.url.replace('http', 'ws')}/v1/sessions/${session.id}/pty?cols=100&rows=30`;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(url);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => {});
    });
    expect(refused).toBe(401);
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${agentKey}` } });
    let output = '';
    let exit: { code: number | null } | undefined;
    ws.on('message', (data, isBinary) => {
      if (isBinary) output += String(data);
      else exit = JSON.parse(String(data));
    });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send(Buffer.from('tty; stty size; echo $((6 * 7))\n'), { binary: true });
    await eventually('the shell to answer', async () => output.includes('42'));
    expect(output).toContain('/dev/pts/0');
    expect(output).toContain('30 100');
    ws.send(JSON.stringify({ type: 'resize', cols: 120, rows: 40 }));
    await eventually('the resize to apply', async () => {
      ws.send(Buffer.from('stty size\n'), { binary: true });
      await new Promise((r) => setTimeout(r, 200));
      return output.includes('40 120');
    });
    // TIOCSTI/TIOCLINUX on the shell's own terminal are refused (EPERM), and nothing typed itself in.
    const inject = [
      'import errno, fcntl, termios',
      'for name, req in (("TIOCSTI", termios.TIOCSTI), ("TIOCLINUX", termios.TIOCLINUX)):',
      '    try:',
      '        for ch in b"touch pwned\\n":',
      '            fcntl.ioctl(0, req, bytes([ch]) if name == "TIOCSTI" else b"\\x02" + bytes(15))',
      '        print(name, "ALLOWED")',
      '    except OSError as e:',
      '        print(name, "REFUSED", errno.errorcode[e.errno])',
    ].join('\n');
    const putScript = await fetch(`${kiln.url}/v1/sessions/${session.id}/files?path=inject.py`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/octet-stream' },
      body: inject,
    });
    expect(putScript.status).toBe(201);
    ws.send(Buffer.from('python3 inject.py; echo injected-done\n'), { binary: true });
    await eventually('the injection attempt to end', async () => /injected-done\r?\n/.test(output.split('echo injected-done').at(-1)!));
    expect(output).toContain('TIOCSTI REFUSED EPERM');
    expect(output).toContain('TIOCLINUX REFUSED EPERM');
    expect(output).not.toContain('ALLOWED');
    const check = await api(kiln.url, agentKey)('POST', `/v1/sessions/${session.id}/steps`, { command: 'test -e pwned && echo pwned || echo clean' });
    expect(check.body.stdout).toBe('clean\n');
    ws.send(Buffer.from('exit 5\n'), { binary: true });
    await eventually('the exit code', async () => exit);
    expect(exit).toMatchObject({ type: 'exit', code: 5 });
  }, 120_000);

  it('max_active is a ceiling; ttl and idle expire; a disabled agent and a lost runner ends its sessions (runner_lost) and fails their sandboxes', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const runner = await kiln.startRunner({ name: 'doomed', capacity: 1 });
    const { tenant, tenantKey, admin, agent } = await keyedTenant(kiln);
    const call = api(kiln.url, tenantKey);
    const policy = await call('POST', '/v1/policies', {
      name: 'two-sessions',
      ruleset: { ...DEFAULT_RULESET, sessions: { max_ttl_seconds: 600, idle_timeout_seconds: 600, max_active: 2 } },
    });
    expect(policy.status).toBe(201);
    const a = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    const b = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    expect([a.status, b.status]).toEqual([201, 201]);
    const c = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    expect(c.status).toBe(422);
    expect(c.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'sessions.max_active', ceiling: 2 });

    // TTL and idle expiry on short settings; suspension and disable end sessions too.
    const shortLived = await call('POST', '/v1/policies', {
      name: 'short-lived',
      ruleset: { ...DEFAULT_RULESET, sessions: { max_ttl_seconds: 600, idle_timeout_seconds: 2, max_active: 5 } },
    });
    const byTtl = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, ttl_seconds: 1 });
    const byIdle = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, ttl_seconds: 600 });
    const agentOwned = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, agent_id: agent.id });
    expect([byTtl.status, byIdle.status, agentOwned.status]).toEqual([201, 201, 201]);
    const ended = async (id: string) =>
      eventually(`session ${id} to end`, async () => {
        const r = await call('GET', `/v1/sessions/${id}`);
        return r.body.status !== 'active' ? r.body : undefined;
      }, 30_000);
    expect(await ended(byTtl.body.id)).toMatchObject({ status: 'expired', reason: 'ttl' });
    expect(await ended(byIdle.body.id)).toMatchObject({ status: 'expired', reason: 'idle' });
    expect((await ended(agentOwned.body.id)).reason).toBe('idle');
    for (const id of [byTtl.body.id, byIdle.body.id]) {
      await eventually('the expired session\'s sandbox to be destroyed', async () => {
        const [sbx] = (await kiln.operator.sandboxes.list({ session_id: id })).items;
        return sbx?.status === 'terminated';
      });
    }
    const roomy = await call('POST', '/v1/policies', { name: 'roomy', ruleset: DEFAULT_RULESET });
    const toDisable = await call('POST', '/v1/sessions', { policy_id: roomy.body.id, agent_id: agent.id });
    expect(toDisable.status).toBe(201);
    await admin.agents.disable(agent.id);
    expect((await call('GET', `/v1/sessions/${toDisable.body.id}`)).body).toMatchObject({ status: 'terminated', reason: 'agent_disabled' });

    // Suspending another tenant ends its sessions (tenant_suspended) and destroys their sandboxes.
    const suspended = await keyedTenant(kiln);
    const doomed = (await api(kiln.url, suspended.agentKey)('POST', '/v1/sessions', {})).body;
    await kiln.operator.tenants.suspend(suspended.tenant.id);
    const afterSuspension = await api(kiln.url, suspended.agentKey)('GET', `/v1/sessions/${doomed.id}`);
    expect(afterSuspension.body).toMatchObject({ status: 'terminated', reason: 'tenant_suspended' });
    await eventually('the suspended tenant\'s sandbox to be destroyed', async () => {
      const [sbx] = (await kiln.operator.sandboxes.list({ session_id: doomed.id })).items;
      return sbx?.status === 'terminated';
    });

    await runner.kill();
    for (const s of [a.body, b.body]) {
      const ended = await eventually('the session to end with its runner', async () => {
        const r = await call('GET', `/v1/sessions/${s.id}`);
        return r.body.status !== 'active' ? r.body : undefined;
      }, 30_000);
      expect(ended).toMatchObject({ status: 'terminated', reason: 'runner_lost' });
      const [sandbox] = (await kiln.operator.sandboxes.list({ session_id: s.id })).items;
      expect(sandbox!.status).toBe('failed');
    }
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 180_000);
});

/** Reads a server-sent event stream, calling `onEvent` for each event until the stream ends. */
async function readEvents(url: string, key: string, onEvent: (event: string, data: any) => void): Promise<void> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  let pending = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, cut);
      pending = pending.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

/**
 * Issue 8, point 6: any control-plane replica serves any session. Two server processes on one
 * PostgreSQL database (sharing the keys and the artifact store, as replicas must), one runner: a step
 * submitted on one replica is watched live, fed and killed through the other; files, artifacts,
 * keepalive, the transcript and the end work from either; sequences stay 1..N across both.
 */
describe('sessions across control-plane replicas (postgres)', () => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('a step submitted on one replica is watched, fed and killed on the other; every session call works on both', async () => {
    const shared = mkdtempSync(join(tmpdir(), 'kiln-replicas-'));
    chmodSync(shared, 0o700);
    kiln = new KilnSystem('postgres', {
      KILN_AUDIT_KEY: randomBytes(32).toString('hex'),
      KILN_SECRETS_KEY: randomBytes(32).toString('hex'),
      KILN_ARTIFACTS_URL: join(shared, 'artifacts'),
    });
    await kiln.startServer();
    await kiln.startRunner({ name: 'replicated', capacity: 1 });
    const replica = await kiln.startReplica();
    const { tenant, agentKey } = await keyedTenant(kiln);
    const a = api(kiln.url, agentKey);
    const b = api(replica.url, agentKey);

    const session = (await a('POST', '/v1/sessions', {})).body;
    expect((await b('GET', `/v1/sessions/${session.id}`)).body).toMatchObject({ id: session.id, status: 'active' });
    expect((await b('POST', `/v1/sessions/${session.id}/steps`, { command: 'echo from-b' })).body).toMatchObject({ sequence: 1, stdout: 'from-b\n' });

    // Submitted on A, watched live on B (its output comes from the runner), fed through B.
    const bg = await a('POST', `/v1/sessions/${session.id}/steps`, { command: 'echo started; read x; echo "got $x"', background: true });
    expect(bg.body).toMatchObject({ sequence: 2, status: 'running' });
    const seen: string[] = [];
    let end: any;
    const watching = readEvents(`${replica.url}/v1/sessions/${session.id}/steps/2/events`, agentKey, (event, data) => {
      if (event === 'output') seen.push(data.data);
      if (event === 'end') end = data;
    });
    await eventually('the live output on the other replica', async () => seen.join('').includes('started'));
    expect((await b('POST', `/v1/sessions/${session.id}/steps/2/stdin`, { data: 'ping\n', eof: true })).status).toBe(200);
    await watching;
    expect(seen.join('')).toBe('started\ngot ping\n');
    expect(end).toMatchObject({ sequence: 2, status: 'succeeded', stdout: 'started\ngot ping\n' });

    // Killed on B while A drives it; its artifacts download from B.
    await a('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 60', background: true });
    expect((await b('POST', `/v1/sessions/${session.id}/steps/3/kill`)).status).toBe(200);
    await eventually('the kill to end the step', async () => (await a('GET', `/v1/sessions/${session.id}/steps/3`)).body.status === 'canceled');
    const withFile = (await a('POST', `/v1/sessions/${session.id}/steps`, { command: 'mkdir -p out; echo kept > out/f.txt', collect: ['out/*'] })).body;
    const download = await fetch(`${replica.url}/v1/artifacts/${withFile.output_refs.artifacts[0]}/content`, { headers: { authorization: `Bearer ${agentKey}` } });
    expect(await download.text()).toBe('kept\n');

    // Files written through one, read through the other; keepalive on B; sequences with no gap across both.
    const put = await fetch(`${replica.url}/v1/sessions/${session.id}/files?path=note.txt`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/octet-stream' },
      body: 'across replicas',
    });
    expect(put.status).toBe(201);
    expect(await (await fetch(`${kiln.url}/v1/sessions/${session.id}/files?path=note.txt`, { headers: { authorization: `Bearer ${agentKey}` } })).text()).toBe('across replicas');
    expect((await b('POST', `/v1/sessions/${session.id}/keepalive`, { ttl_seconds: 120 })).status).toBe(200);
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b)('POST', `/v1/sessions/${session.id}/steps`, { command: 'true' })));
    expect(burst.map((r) => r.body.sequence).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 5));
    const transcript = (await b('GET', `/v1/sessions/${session.id}/steps?limit=100`)).body.items.map((s: { sequence: number }) => s.sequence);
    expect(transcript).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect((await b('DELETE', `/v1/sessions/${session.id}`)).body).toMatchObject({ status: 'terminated', reason: 'deleted' });
    expect((await a('GET', `/v1/sessions/${session.id}`)).body.status).toBe('terminated');
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
    rmSync(shared, { recursive: true, force: true });
  }, 180_000);
});
