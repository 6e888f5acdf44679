import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { DEFAULT_LIMITS, KilnError, type Limits } from '@kiln/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../bubblewrap-driver.js';
import { runtimeDir } from '../runtime-dir.js';
import { PersistentSandbox } from './persistent-sandbox.js';

// Real bubblewrap, cgroups, uid pool and kiln-init: run as root (scripts/test.sh builds the helpers).
const MiB = 1024 * 1024;
const limits: Limits = { ...DEFAULT_LIMITS, memory_bytes: 128 * MiB, pids: 64, wall_time_ms: 20_000 };
const driver = new BubblewrapDriver();

async function start(overrides: Partial<Limits> = {}, env?: Record<string, string>): Promise<PersistentSandbox> {
  const handle = await driver.start({ limits: { ...limits, ...overrides }, ...(env ? { env } : {}) });
  if (!(handle instanceof PersistentSandbox)) throw new Error('BubblewrapDriver.start did not return a PersistentSandbox');
  return handle;
}

/** Polls without asserting on wall time; fails after many tries. */
async function eventually<T>(attempt: () => Promise<T | undefined>, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition never held');
}

function httpGet(socketPath: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
  });
}

describe('persistent sandbox', () => {
  let sbx: PersistentSandbox;

  beforeAll(async () => {
    sbx = await start({}, { GREETING: 'hello' });
  });
  afterAll(async () => {
    await sbx?.destroy();
    await driver.drain();
  });

  it('runs kiln-init as PID 1, commands as the unprivileged sandbox user, state kept between commands', async () => {
    const pid1 = await sbx.exec(['cat', '/proc/1/cmdline']);
    expect(pid1.stdout.toString().split('\0')[0]).toBe('/kiln-init');
    const who = await sbx.exec('id -u; echo "$GREETING $EXTRA"; pwd', { env: { EXTRA: 'there' } });
    expect(who.verdict).toBe('ok');
    expect(who.stdout.toString()).toBe('1000\nhello there\n/workspace\n');
    await sbx.exec('mkdir -p d && echo kept > d/state');
    const again = await sbx.exec(['cat', 'state'], { cwd: 'd' });
    expect(again.stdout.toString()).toBe('kept\n');
    // On the host, what the sandbox writes belongs to its pool uid, never to root.
    expect(sbx.uid).toBeGreaterThanOrEqual(1000);
    expect(statSync(`${sbx.hostPaths.workspaceRoot}/work/d/state`).uid).toBe(sbx.uid);
    expect(statSync(`/proc/${sbx.initHostPid()}`).uid).toBe(sbx.uid);
  });

  it('refuses TIOCSTI and TIOCLINUX (high bits set too) on a terminal of its own, and nothing is injected', async () => {
    // A pty the step opens itself: without the filter TIOCSTI would push "X" into its input queue.
    const script = `
import ctypes, json, os, pty, tty
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def ioctl(fd, req, arg):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(16), ctypes.c_long(fd), ctypes.c_ulong(req), ctypes.c_void_p(arg))
    return ctypes.get_errno() if r == -1 else 0
master, slave = pty.openpty()
tty.setraw(slave)
ch = ctypes.create_string_buffer(b"X")
sub = ctypes.create_string_buffer(b"\\x02" + b"\\x00" * 15)
res = {
  "TIOCSTI": ioctl(slave, 0x5412, ctypes.addressof(ch)),
  "TIOCSTI_high_bits": ioctl(slave, 0x100005412, ctypes.addressof(ch)),
  "TIOCLINUX": ioctl(slave, 0x541C, ctypes.addressof(sub)),
}
os.set_blocking(slave, False)
try:
    res["injected"] = os.read(slave, 16).decode()
except BlockingIOError:
    res["injected"] = ""
print(json.dumps(res))
`;
    const r = await sbx.exec(['python3', '-c', script]);
    expect(r.stderr.toString()).toBe('');
    expect(JSON.parse(r.stdout.toString())).toEqual({ TIOCSTI: 1, TIOCSTI_high_bits: 1, TIOCLINUX: 1, injected: '' });
  });

  it('reports exit codes, streams output and passes stdin', async () => {
    const seen: string[] = [];
    const r = await sbx.exec('cat; echo oops >&2; exit 7', { stdin: 'in\n', onStdout: (c) => seen.push(c.toString()) });
    expect(r).toMatchObject({ verdict: 'runtime_error', exit_status: { code: 7, signal: null } });
    expect(r.stdout.toString()).toBe('in\n');
    expect(seen.join('')).toBe('in\n');
    expect(r.stderr.toString()).toBe('oops\n');
  });

  it('accounts resources per command (counters reset between commands)', async () => {
    const big = await sbx.exec(['python3', '-c', 'b = bytearray(60 * 1024 * 1024); print(len(b))']);
    expect(big.verdict).toBe('ok');
    expect(big.resource_usage.memory_peak_bytes).toBeGreaterThan(60 * MiB);
    expect(big.resource_usage.cpu_time_ms).toBeGreaterThan(0);
    const small = await sbx.exec(['true']);
    expect(small.resource_usage.memory_peak_bytes).toBeLessThan(big.resource_usage.memory_peak_bytes / 2);
  });

  it('memory bomb: that command gets memory_limit and the sandbox survives', async () => {
    const r = await sbx.exec(['python3', '-c', 'x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))']);
    expect(r.verdict).toBe('memory_limit');
    expect(r.exit_status.signal).toBe('SIGKILL');
    const after = await sbx.exec(['echo', 'alive']);
    expect(after.stdout.toString()).toBe('alive\n');
  });

  it('timeout kills the command group only: a background service keeps running', async () => {
    const bg = await sbx.exec('sleep 600 >/dev/null 2>&1 & echo $!');
    const servicePid = bg.stdout.toString().trim();
    const r = await sbx.exec('sleep 30 & sleep 30', { timeoutMs: 300 });
    expect(r.verdict).toBe('time_limit');
    const check = await sbx.exec(['kill', '-0', servicePid]);
    expect(check.exit_status.code).toBe(0);
    await sbx.exec(['kill', servicePid]);
  });

  it('fork bomb is contained by the pids limit and the sandbox keeps serving', async () => {
    const r = await sbx.exec('bomb() { bomb | bomb & }; bomb; sleep 5', { timeoutMs: 1500 });
    expect(r.verdict).not.toBe('ok');
    const after = await eventually(async () => {
      const e = await sbx.exec(['echo', 'alive']);
      return e.verdict === 'ok' ? e : undefined;
    });
    expect(after.stdout.toString()).toBe('alive\n');
    // The kernel refused forks at pids.max: the bomb hit the wall instead of the host.
    const pidsDir = sbx.cgroupDirs().find((d) => existsSync(`${d}/pids.events`));
    const refusedForks = Number(/max (\d+)/.exec(readFileSync(`${pidsDir}/pids.events`, 'utf8'))?.[1]);
    expect(refusedForks).toBeGreaterThan(0);
  });

  it('cuts output at output_bytes, enforces cpu time, file size and disk per command, and can be canceled', async () => {
    const small = await start({ output_bytes: 4096, cpu_time_ms: 300, file_size_bytes: MiB, disk_bytes: 4 * MiB });
    try {
      const r = await small.exec(['yes']);
      expect(r.verdict).toBe('output_limit');
      expect(r.output_truncated).toBe(true);
      expect(r.stdout.length).toBe(4096);
      const spin = await small.exec('while :; do :; done', { timeoutMs: 10_000 });
      expect(spin.verdict).toBe('time_limit');
      expect(spin.resource_usage.cpu_time_ms).toBeGreaterThanOrEqual(300);
      const big = await small.exec(['dd', 'if=/dev/zero', 'of=big', 'bs=1000000', 'count=2']);
      expect(big).toMatchObject({ verdict: 'file_size_limit', exit_status: { signal: 'SIGXFSZ' } });
      const bigFromShell = await small.exec('head -c 2000000 /dev/zero > big');
      expect(bigFromShell).toMatchObject({ verdict: 'file_size_limit', exit_status: { code: 153 } });
      const full = await small.exec('for i in 1 2 3 4 5 6; do head -c 900000 /dev/zero > f$i || exit 9; done');
      expect(full).toMatchObject({ verdict: 'runtime_error', exit_status: { code: 9 } });
      expect(full.stderr.toString()).toContain('No space left');
      await expect(small.writeFile('more', Buffer.alloc(3 * MiB))).rejects.toThrow();
      expect((await small.exec('rm -f f* big; echo fine')).stdout.toString()).toBe('fine\n');
      const controller = new AbortController();
      const canceled = await small.exec('echo go; sleep 30', { signal: controller.signal, onStdout: () => controller.abort() });
      expect(canceled.verdict).toBe('canceled');
    } finally {
      await small.destroy();
    }
  });

  it('reads, writes and lists /workspace without following links the sandbox planted', async () => {
    await sbx.writeFile('notes/a.txt', 'from host');
    const cat = await sbx.exec(['cat', 'notes/a.txt']);
    expect(cat.stdout.toString()).toBe('from host');
    const planted = await sbx.exec('echo from sandbox > notes/b.txt && ln -s /etc/passwd notes/leak && ln -s / notes/rootdir');
    expect({ verdict: planted.verdict, stderr: planted.stderr.toString() }).toEqual({ verdict: 'ok', stderr: '' });
    expect((await sbx.readFile('/workspace/notes/b.txt')).toString()).toBe('from sandbox\n');
    const entries = await sbx.listFiles('notes');
    expect(entries.sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      { path: 'notes/a.txt', type: 'file', size_bytes: 9 },
      { path: 'notes/b.txt', type: 'file', size_bytes: 13 },
      { path: 'notes/leak', type: 'symlink', size_bytes: 0 },
      { path: 'notes/rootdir', type: 'symlink', size_bytes: 0 },
    ]);
    const hostPasswd = readFileSync('/etc/passwd');
    await expect(sbx.readFile('notes/leak')).rejects.toThrow();
    await expect(sbx.writeFile('notes/leak', 'pwned')).rejects.toThrow();
    await expect(sbx.writeFile('notes/rootdir/tmp/x', 'pwned')).rejects.toThrow();
    await expect(sbx.readFile('../etc/passwd')).rejects.toThrow(KilnError);
    await expect(sbx.readFile('notes/missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(readFileSync('/etc/passwd').equals(hostPasswd)).toBe(true);
  });

  it('exposes a port inside as a Unix socket on the host (python http.server)', async () => {
    await sbx.writeFile('site/index.html', '<h1>kiln</h1>');
    const server = await sbx.exec('cd site && python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & echo $!');
    expect(server.verdict).toBe('ok');
    const socketPath = await sbx.exposePort(8000);
    expect(await sbx.exposePort(8000)).toBe(socketPath);
    const page = await eventually(async () => {
      const r = await httpGet(socketPath, '/index.html');
      return r.status === 200 ? r : undefined;
    });
    expect(page.body).toBe('<h1>kiln</h1>');
    // A large answer arrives whole, connection after connection (the service closes each: HTTP/1.0).
    await sbx.writeFile('site/big.txt', 'x'.repeat(3 * MiB));
    for (let i = 0; i < 5; i++) {
      const big = await httpGet(socketPath, '/big.txt');
      expect(big.body.length).toBe(3 * MiB);
    }
    // A client that half-closes after its request still gets the whole answer.
    const raw = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect(socketPath, () => socket.end('GET /big.txt HTTP/1.0\r\n\r\n'));
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
      socket.on('error', reject);
    });
    expect(raw.startsWith('HTTP/1.0 200')).toBe(true);
    expect(raw.length - raw.indexOf('\r\n\r\n') - 4).toBe(3 * MiB);
    // The socket lives where the sandbox cannot reach it.
    const inside = await sbx.exec(['ls', '/run/kiln']);
    expect(inside.stdout.toString().trim()).toBe('init.sock');
    await sbx.exec(['kill', server.stdout.toString().trim()]);
  });
});

describe('persistent sandbox lifecycle', () => {
  afterAll(() => driver.drain());

  it('destroy() removes every trace: processes, cgroup, uid, mounts, files', async () => {
    const sbx = await start();
    await sbx.exec('sleep 600 >/dev/null 2>&1 &');
    await sbx.exposePort(9000);
    const pids = sbx.pids();
    expect(pids.length).toBeGreaterThanOrEqual(3); // outer bwrap, init, sleep
    const { workspaceRoot } = sbx.hostPaths;
    const cgroupDirs = sbx.cgroupDirs();
    const uidLock = `${runtimeDir()}/uids/${sbx.uid}.lock`;
    expect(existsSync(uidLock)).toBe(true);
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(workspaceRoot);

    await sbx.destroy();

    // Not even a zombie: the outer bwrap reaped the init before it went.
    expect(pids.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    for (const dir of cgroupDirs) expect(existsSync(dir)).toBe(false);
    expect(existsSync(uidLock)).toBe(false);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(workspaceRoot);
    expect(existsSync(workspaceRoot)).toBe(false);
    await expect(sbx.exec(['true'])).rejects.toThrow(/is gone/);
    await sbx.destroy(); // idempotent
  });

  it('a sandbox whose init died is reported dead clearly', async () => {
    const sbx = await start();
    try {
      const initPid = sbx.initHostPid();
      expect(initPid).toBeGreaterThan(0);
      process.kill(initPid!, 'SIGKILL');
      await eventually(async () => (sbx.alive ? undefined : true));
      await expect(sbx.exec(['true'])).rejects.toThrow(/is gone: its init ended/);
    } finally {
      await sbx.destroy();
    }
  });
});
