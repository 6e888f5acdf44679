import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpawnedProcess, type LaunchRequest } from './spawner-client.js';
import { encodeControlHello, encodeStreamHello, FdMode } from './spawner-protocol.js';

const SPAWNER = fileURLToPath(new URL('../../native/build/kiln-spawner', import.meta.url));

interface Started {
  child: ChildProcess;
  socketPath: string;
}

/** Starts a kiln-spawner whose parent is `parentPid`'s process (by default this test process). */
function startSpawner(dir: string, name: string): Promise<Started> {
  const socketPath = `${dir}/${name}.sock`;
  const child = spawn(SPAWNER, ['--socket', socketPath, '--parent', String(process.pid)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', () => resolve({ child, socketPath }));
    child.once('exit', (code) => reject(new Error(`kiln-spawner exited ${code}`)));
  });
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string[];
  error?: string;
}

/** Launches through the spawner, writes `stdin` (then EOF) and collects every stream. */
function launch(socketPath: string, request: LaunchRequest, stdin?: string): Promise<Outcome> {
  const p = new SpawnedProcess(socketPath, request);
  const out = p.stdio.map(() => '');
  p.stdio.forEach((s, fd) => s?.on('data', (d: Buffer) => (out[fd] += d.toString())));
  if (stdin !== undefined) p.stdio[0]?.end(stdin);
  return new Promise((resolve) => {
    let error: string | undefined;
    p.on('error', (e: Error) => (error = e.message));
    p.on('close', (code: number | null, signal: NodeJS.Signals | null) =>
      resolve({ code, signal, out, ...(error ? { error } : {}) }),
    );
  });
}

const sh = (script: string, stdio: LaunchRequest['stdio'] = ['pipe', 'pipe', 'pipe']): LaunchRequest => ({
  path: '/bin/sh',
  args: ['-c', script],
  env: { KILN_TEST: 'yes' },
  stdio,
});

/** Opens a raw connection and resolves once the spawner closed it (or `waitMs` passed: still open). */
function rawConnection(socketPath: string, bytes: Buffer): Promise<{ closed: boolean; reply: string }> {
  return new Promise((resolve) => {
    const s: Socket = createConnection(socketPath);
    let reply = '';
    s.on('data', (d) => (reply += d.toString()));
    s.on('error', () => {});
    s.write(bytes);
    s.once('close', () => resolve({ closed: true, reply }));
  });
}

const gone = (pid: number) => !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe.runIf(existsSync(SPAWNER))('kiln-spawner', () => {
  let dir: string;
  let spawner: Started;
  beforeAll(async () => {
    dir = mkdtempSync('/tmp/kiln-spawner-test-');
    spawner = await startSpawner(dir, 'main');
  });
  afterAll(() => {
    spawner.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the child exactly the requested fds, argv, environment, and default signals', async () => {
    const r = await launch(
      spawner.socketPath,
      sh('echo "$0 $KILN_TEST ${HOME-nohome}"; ls /proc/$$/fd; grep -E "^Sig(Blk|Ign)" /proc/self/status; echo three >&3', [
        'pipe',
        'pipe',
        'pipe',
        'pipe',
        'ignore',
        'pipe',
      ]),
    );
    expect(r.code).toBe(0);
    const [first, ...rest] = r.out[1]!.trim().split('\n');
    expect(first).toBe('/bin/sh yes nohome');
    // The shell's own fds: 0..3 and 5 from us, never 4 (ignored) nor anything the spawner holds.
    expect(rest.filter((l) => /^\d+$/.test(l)).map(Number)).toEqual([0, 1, 2, 3, 5]);
    expect(rest.filter((l) => l.startsWith('Sig'))).toEqual(['SigBlk:\t0000000000000000', 'SigIgn:\t0000000000000000']);
    expect(r.out[3]).toBe('three\n');
  });

  it('passes stdin with EOF, keeps stdout and stderr apart, reports exit codes', async () => {
    const r = await launch(spawner.socketPath, sh('cat; echo oops >&2; exit 7'), 'some input\n');
    expect(r).toMatchObject({ code: 7, signal: null });
    expect(r.out.slice(0, 3)).toEqual(['', 'some input\n', 'oops\n']);
  });

  it('gives /dev/null for ignored stdio and reports death by signal', async () => {
    const r = await launch(spawner.socketPath, sh('cat; ls -l /proc/self/fd/0 >&2; kill -TERM $$', ['ignore', 'ignore', 'pipe']));
    expect(r.signal).toBe('SIGTERM');
    expect(r.out[2]).toMatch(/\/dev\/null/);
  });

  it('kills through the control connection', async () => {
    const p = new SpawnedProcess(spawner.socketPath, sh('echo started; exec sleep 60'));
    const closed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      p.on('close', (code: number | null, signal: NodeJS.Signals | null) => resolve([code, signal])),
    );
    await Promise.all([new Promise((r) => p.stdio[1]?.once('data', r)), new Promise((r) => p.once('spawn', r))]);
    expect(p.pid).toBeGreaterThan(1);
    expect(p.kill('SIGKILL')).toBe(true);
    expect(await closed).toEqual([null, 'SIGKILL']);
  });

  it('keeps a kill that comes before the fork and sends it right after', async () => {
    const key = 'd'.repeat(32);
    const control = createConnection(spawner.socketPath);
    let reply = '';
    control.on('data', (d) => (reply += d.toString()));
    const closed = new Promise((r) => control.once('end', r));
    control.write(encodeControlHello({ key, modes: [FdMode.Stream, 0, 0, 0, 0, 0], argv: ['/bin/sleep', '60'], env: {} }));
    control.write(Buffer.from([9]));
    // The stream comes only later, so the spawner sees the kill while the launch waits for it.
    await new Promise((r) => setTimeout(r, 50));
    const stream = createConnection(spawner.socketPath);
    stream.on('error', () => {});
    stream.write(encodeStreamHello(key, 0));
    await closed;
    control.destroy();
    stream.destroy();
    expect(reply).toMatch(/^pid \d+\nexit - 9\n$/);
  });

  it('reports a program it could not exec as an error with exit 127', async () => {
    const r = await launch(spawner.socketPath, { path: '/nonexistent/program', args: [], env: {}, stdio: ['pipe', 'pipe', 'pipe'] });
    expect(r.code).toBe(127);
    expect(r.error).toMatch(/exec \/nonexistent\/program: No such file/);
  });

  it('survives garbage and malformed or oversized hellos, and keeps serving', async () => {
    const garbage = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await rawConnection(spawner.socketPath, garbage)).closed).toBe(true);
    const oversized = Buffer.alloc(8);
    oversized.writeUInt32LE(1024 * 1024 + 1, 0);
    expect((await rawConnection(spawner.socketPath, oversized)).closed).toBe(true);
    const zero = Buffer.alloc(4);
    expect((await rawConnection(spawner.socketPath, zero)).closed).toBe(true);
    // A control hello whose string count does not match its strings.
    const good = encodeControlHello({ key: 'a'.repeat(32), modes: [0, 0, 0, 0, 0, 0], argv: ['/bin/true'], env: {} });
    const lying = Buffer.from(good);
    lying.writeUInt32LE(5, 4 + 1 + 32 + 6);
    expect((await rawConnection(spawner.socketPath, lying)).closed).toBe(true);
    // A stream hello for a fd the spawner does not have, and one with a bad key.
    const badFd = encodeStreamHello('b'.repeat(32), 0);
    badFd.writeUInt8(9, badFd.length - 1);
    expect((await rawConnection(spawner.socketPath, badFd)).closed).toBe(true);
    const badKey = encodeStreamHello('c'.repeat(32), 0);
    badKey.write('Z', 5, 'latin1');
    expect((await rawConnection(spawner.socketPath, badKey)).closed).toBe(true);
    const random = Buffer.alloc(4096);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + 13) & 0xff;
    random.writeUInt32LE(100, 0);
    random.write('C', 4, 'latin1');
    expect((await rawConnection(spawner.socketPath, random)).closed).toBe(true);
    const r = await launch(spawner.socketPath, sh('echo still here'));
    expect(r.out[1]).toBe('still here\n');
  });

  it('refuses launches beyond its bound', async () => {
    // Control hellos whose stream never comes: each holds a launch slot until it times out or closes.
    const held: Socket[] = [];
    const replies: string[] = [];
    for (let i = 0; i < 257; i++) {
      const s = createConnection(spawner.socketPath);
      s.on('error', () => {});
      const key = i.toString(16).padStart(32, '0');
      s.write(encodeControlHello({ key, modes: [FdMode.Stream, 0, 0, 0, 0, 0], argv: ['/bin/true'], env: {} }));
      s.on('data', (d) => replies.push(d.toString()));
      held.push(s);
    }
    await waitUntil(() => replies.length > 0, 'a launch is refused');
    expect(replies).toEqual(['error too many launches at once (256)\n']);
    for (const s of held) s.destroy();
    // Slots free up as their control connections close.
    let r: Outcome | undefined;
    for (let i = 0; i < 50 && r?.out[1] !== 'again\n'; i++) {
      r = await launch(spawner.socketPath, sh('echo again'));
      if (r.out[1] !== 'again\n') await new Promise((ok) => setTimeout(ok, 20));
    }
    expect(r?.out[1]).toBe('again\n');
  });

  it('refuses connections beyond its bound and recovers once they close', async () => {
    const held: Socket[] = [];
    for (let i = 0; i < 1030; i++) {
      held.push(
        await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(spawner.socketPath, () => resolve(s));
          s.once('error', reject);
        }),
      );
      held.at(-1)?.on('error', () => {});
    }
    let closedBySpawner = 0;
    await waitUntil(() => {
      closedBySpawner = held.filter((s) => s.readableEnded || s.destroyed).length;
      return closedBySpawner >= 6;
    }, 'the spawner closed the connections over its bound');
    expect(closedBySpawner).toBeLessThan(1030);
    for (const s of held) s.destroy();
    let r: Outcome | undefined;
    for (let i = 0; i < 50 && r?.out[1] !== 'ok\n'; i++) {
      r = await launch(spawner.socketPath, sh('echo ok'));
      if (r.out[1] !== 'ok\n') await new Promise((ok) => setTimeout(ok, 20));
    }
    expect(r?.out[1]).toBe('ok\n');
  });

  it('ends in-flight launches with an error when it dies', async () => {
    const own = await startSpawner(dir, 'dies');
    const p = new SpawnedProcess(own.socketPath, sh('echo up; exec sleep 60'));
    let error = '';
    p.on('error', (e: Error) => (error = e.message));
    const closed = new Promise((resolve) => p.on('close', resolve));
    await Promise.all([new Promise((r) => p.stdio[1]?.once('data', r)), new Promise((r) => p.once('spawn', r))]);
    const payload = p.pid!;
    own.child.kill('SIGKILL');
    await closed;
    expect(error).toMatch(/without an exit status/);
    // Its children die with it (parent-death signal).
    await waitUntil(() => gone(payload), 'the payload died with the spawner');
  });

  it('dies with its parent, and takes its children along', async () => {
    // A shell stands in for the runner: the spawner's parent, which we then kill.
    const socketPath = `${dir}/orphan.sock`;
    const parent = spawn('/bin/sh', ['-c', `"$0" --socket "$1" --parent $$ & wait`, SPAWNER, socketPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise((r) => parent.stdout?.once('data', r));
      const p = new SpawnedProcess(socketPath, sh('echo up; exec sleep 60'));
      p.on('error', () => {});
      await Promise.all([new Promise((r) => p.stdio[1]?.once('data', r)), new Promise((r) => p.once('spawn', r))]);
      const payload = p.pid!;
      const spawnerPid = Number(readFileSync(`/proc/${payload}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)?.[1]);
      expect(spawnerPid).toBeGreaterThan(1);
      parent.kill('SIGKILL');
      await waitUntil(() => gone(spawnerPid) && gone(payload), 'the spawner and its child died with the parent');
    } finally {
      parent.kill('SIGKILL');
      parent.stdout?.destroy();
    }
  });
});
