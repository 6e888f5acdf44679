import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectUnixNoFollow, openInitTunnel, runInitCommand } from '../../src/sandbox/persistent/init-client.js';
import { encodeCommand, encodeFrame, FrameDecoder } from '../../src/sandbox/persistent/protocol.js';

// kiln-init outside any sandbox (it makes itself a subreaper), spoken to over its socket.
const nativeDir = fileURLToPath(new URL('..', import.meta.url));
const initBinary = path.join(nativeDir, 'build', 'kiln-init');
const ENV = { PATH: '/usr/local/bin:/usr/bin:/bin' };

let dir: string;
let socketPath: string;
let init: ChildProcess;

const run = (argv: string[], extra: Partial<Parameters<typeof runInitCommand>[2]> & { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {}) =>
  runInitCommand(
    socketPath,
    { argv, env: extra.env ?? ENV, cwd: extra.cwd, timeoutMs: extra.timeoutMs },
    { outputLimitBytes: 64 * 1024 * 1024, ...extra },
  );

/** Polls a condition without asserting on wall time; fails after many tries. */
async function eventually(check: () => boolean, tries = 500): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition never held');
}

/** True when the pid is gone entirely (reaped, not a zombie). */
const isGone = (pid: number) => !fs.existsSync(`/proc/${pid}`);

beforeAll(async () => {
  execFileSync('make', ['-C', nativeDir, 'build/kiln-init'], { stdio: 'ignore' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-init-test-'));
  socketPath = path.join(dir, 'init.sock');
  init = spawn(initBinary, [socketPath], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    init.stdout!.once('data', (d: Buffer) => (d.toString() === 'ready\n' ? resolve() : reject(new Error(String(d)))));
    init.once('exit', (code) => reject(new Error(`kiln-init exited ${code}`)));
  });
});

afterAll(() => {
  init.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('kiln-init', () => {
  it('runs an argv and streams its stdout, stderr and exit code', async () => {
    const chunks: string[] = [];
    const r = await run(['sh', '-c', 'echo out; echo err >&2; exit 3'], { onStdout: (c) => chunks.push(c.toString()) });
    expect(r.stdout.toString()).toBe('out\n');
    expect(r.stderr.toString()).toBe('err\n');
    expect(chunks.join('')).toBe('out\n');
    expect(r.exit).toEqual({ code: 3, signalNumber: null, timedOut: false, killRequested: false });
  });

  it('gives the command exactly the env and cwd it was sent', async () => {
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    const r = await run(['sh', '-c', 'pwd; env | sort'], { cwd: path.join(dir, 'sub'), env: { ...ENV, KILN_X: 'a b=c' } });
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines[0]).toBe(path.join(dir, 'sub'));
    expect(lines).toContain('KILN_X=a b=c');
    expect(lines.filter((l) => l.startsWith('HOME='))).toEqual([]);
  });

  it('passes a megabyte of stdin through and back with back-pressure on both sides', async () => {
    const input = Buffer.alloc(1024 * 1024 + 17);
    for (let i = 0; i < input.length; i++) input[i] = (i * 31) & 0xff;
    const r = await run(['cat'], { stdin: input });
    expect(r.stdout.equals(input)).toBe(true);
    expect(r.exit.code).toBe(0);
  });

  it('reports a missing program as exit 127 with a message', async () => {
    const r = await run(['/nonexistent/prog']);
    expect(r.exit.code).toBe(127);
    expect(r.stderr.toString()).toContain('/nonexistent/prog');
  });

  it('reports death by a signal', async () => {
    const r = await run(['sh', '-c', 'kill -9 $$']);
    expect(r.exit).toMatchObject({ code: null, signalNumber: 9, timedOut: false });
  });

  it('kills the whole process group at the timeout', async () => {
    const r = await run(['sh', '-c', 'sleep 30 & echo $!; wait'], { timeoutMs: 300 });
    expect(r.exit).toMatchObject({ signalNumber: 9, timedOut: true });
    const background = Number(r.stdout.toString().trim());
    expect(background).toBeGreaterThan(1);
    await eventually(() => isGone(background));
  });

  it('ends a command when its main process ends and reaps what it left behind', async () => {
    const r = await run(['sh', '-c', 'sleep 0.2 >/dev/null 2>&1 & echo $!']);
    expect(r.exit.code).toBe(0);
    const orphan = Number(r.stdout.toString().trim());
    await eventually(() => isGone(orphan));
  });

  it('kills the group on request (abort signal)', async () => {
    const controller = new AbortController();
    const r = await run(['sh', '-c', 'echo started; sleep 30'], {
      signal: controller.signal,
      onStdout: () => controller.abort(),
    });
    expect(r.canceled).toBe(true);
    expect(r.exit).toMatchObject({ signalNumber: 9, killRequested: true, timedOut: false });
  });

  it('kills the group when the client hangs up mid-command', async () => {
    const socket = await connectUnixNoFollow(socketPath);
    const pid = await new Promise<number>((resolve) => {
      const decoder = new FrameDecoder();
      socket.on('data', (d) => {
        const out = decoder.push(d).find((f) => f.type === 'o');
        if (out) resolve(Number(out.payload.toString().trim()));
      });
      socket.write(encodeCommand({ argv: ['sh', '-c', 'echo $$; exec sleep 30'], env: ENV }));
    });
    expect(isGone(pid)).toBe(false);
    socket.destroy();
    await eventually(() => isGone(pid));
  });

  it('cuts output at the limit and kills the command', async () => {
    const r = await run(['yes'], { outputLimitBytes: 10_000 });
    expect(r.outputLimitHit).toBe(true);
    expect(r.stdout.length).toBe(10_000);
    expect(r.exit.signalNumber).toBe(9);
  });

  it('runs several commands at once', async () => {
    const flag = path.join(dir, 'flag');
    const waiting = run(['sh', '-c', `while [ ! -e ${flag} ]; do sleep 0.01; done; echo seen`]);
    const touched = await run(['touch', flag]);
    expect(touched.exit.code).toBe(0);
    expect((await waiting).stdout.toString()).toBe('seen\n');
  });

  it('survives garbage, oversized frames and bad requests, and keeps serving', async () => {
    const answers: string[] = [];
    const attacks = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0x41, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
      encodeFrame('X'),
      Buffer.concat([encodeFrame('A', 'a\0b'), encodeFrame('X')]),
      Buffer.concat([encodeFrame('E', 'NOEQUALS')]),
      Buffer.concat([encodeFrame('A', 'true'), encodeFrame('T', 'x')]),
      Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)),
    ];
    for (const attack of attacks) {
      const socket = await connectUnixNoFollow(socketPath);
      const reply = await new Promise<string>((resolve) => {
        const got: Buffer[] = [];
        socket.on('data', (d) => got.push(d));
        socket.on('close', () => resolve(Buffer.concat(got).subarray(5).toString()));
        socket.on('error', () => undefined);
        socket.write(attack);
      });
      answers.push(reply);
    }
    expect(answers.slice(0, 6).every((a) => a.length > 0)).toBe(true);
    const r = await run(['echo', 'still here']);
    expect(r.stdout.toString()).toBe('still here\n');
  });

  it('bounds argv and env entries', async () => {
    const tooMany = Array.from({ length: 1025 }, (_, i) => `a${i}`);
    await expect(run(['echo', ...tooMany])).rejects.toThrow(/too many argv/);
    const fine = await run(['sh', '-c', 'echo $#', 'sh', ...tooMany.slice(0, 1000)]);
    expect(fine.stdout.toString()).toBe('1000\n');
    const env = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`V${i}`, 'x']));
    await expect(run(['true'], { env })).rejects.toThrow(/too many argv or env/);
  });

  it('bounds the number of connections and recovers when they close', async () => {
    // One at a time, so the listen backlog never decides; each socket settles on connect or on error.
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 80; i++) {
        sockets.push(
          await new Promise<net.Socket>((resolve) => {
            const s = net.connect(socketPath, () => resolve(s));
            s.on('error', () => resolve(s));
          }),
        );
      }
      const closed = () => sockets.filter((s) => s.destroyed || s.readableEnded || s.closed).length;
      // The ones over the bound are closed by the init; the held ones stay open.
      await eventually(() => closed() >= 80 - 64);
      await new Promise((r) => setTimeout(r, 50));
      expect(closed()).toBe(80 - 64);
    } finally {
      for (const s of sockets) s.destroy();
    }
    let answer = '';
    for (let attempt = 0; attempt < 50 && answer === ''; attempt++) {
      answer = await run(['echo', 'ok']).then((r) => r.stdout.toString(), () => '');
    }
    expect(answer).toBe('ok\n');
  });

  it('tunnels raw bytes to a TCP port and refuses a closed one', async () => {
    const server = net.createServer((s) => s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d]))));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const tunnel = await openInitTunnel(socketPath, port);
      const reply = await new Promise<string>((resolve) => {
        tunnel.once('data', (d) => resolve(d.toString()));
        tunnel.resume();
        tunnel.write('ping');
      });
      expect(reply).toBe('echo:ping');
      tunnel.destroy();
    } finally {
      server.close();
    }
    await expect(openInitTunnel(socketPath, port)).rejects.toThrow(/connect to 127.0.0.1/);
  });

  it('refuses to connect through a planted symlink', async () => {
    const link = path.join(dir, 'link.sock');
    fs.symlinkSync(socketPath, link);
    await expect(connectUnixNoFollow(link)).rejects.toThrow(/not a socket/);
  });
});
