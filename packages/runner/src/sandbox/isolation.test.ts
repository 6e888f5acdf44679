import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { hostProcessesWith, runSh, waitFor } from './test-support.js';

const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

const text = (b: Buffer) => b.toString('utf8');

describe('isolation of one-shot sandboxes', () => {
  it('has every namespace of its own', async () => {
    const r = await runSh(driver, 'for ns in user pid mnt net ipc uts cgroup; do readlink /proc/self/ns/$ns; done');
    expect(r.verdict).toBe('ok');
    const inside = text(r.stdout).trim().split('\n');
    const { readlinkSync } = await import('node:fs');
    const host = ['user', 'pid', 'mnt', 'net', 'ipc', 'uts', 'cgroup'].map((ns) => readlinkSync(`/proc/self/ns/${ns}`));
    expect(inside).toHaveLength(7);
    inside.forEach((ns, i) => expect(ns).not.toBe(host[i]));
  });

  it('has no capabilities, NoNewPrivs and a seccomp filter', async () => {
    const r = await runSh(driver, 'grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status');
    const fields = Object.fromEntries(
      text(r.stdout)
        .trim()
        .split('\n')
        .map((l) => l.split(/:\s+/) as [string, string]),
    );
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(fields[cap]).toBe('0000000000000000');
    expect(fields.NoNewPrivs).toBe('1');
    expect(fields.Seccomp).toBe('2');
  });

  it('sees none of the runner environment or its secrets', async () => {
    process.env.KILN_TEST_SECRET = 'hunter2-do-not-leak';
    const r = await runSh(driver, 'env; cat /proc/self/environ | tr "\\0" "\\n"', {}, { env: { GIVEN: 'yes' } });
    delete process.env.KILN_TEST_SECRET;
    const out = text(r.stdout);
    expect(out).not.toContain('hunter2');
    expect(out).toContain('GIVEN=yes');
    const names = new Set(out.split('\n').map((l) => l.split('=')[0]).filter(Boolean));
    for (const n of names) expect(['PATH', 'HOME', 'LANG', 'TMPDIR', 'USER', 'GIVEN', 'PWD', 'SHLVL', '_']).toContain(n);
  });

  it('sees only /usr read-only and nothing else of the host', async () => {
    const hostTmp = mkdtempSync('/tmp/kiln-host-');
    writeFileSync(`${hostTmp}/secret`, 'host tmp secret');
    writeFileSync('/dev/shm/kiln-host-secret', 'host shm secret');
    try {
      const r = await runSh(
        driver,
        [
          'for p in /root /home /run /var /work /opt /etc/shadow /etc/hostname /dev/shm/kiln-host-secret ' +
            `${hostTmp} /proc/1/root/etc/shadow /sys/fs/cgroup/memory/kiln; do [ -e "$p" ] && echo "VISIBLE $p"; done`,
          'ls /tmp /dev/shm',
          'touch /usr/kiln-x 2>/dev/null && echo USR-WRITABLE',
          'touch /etc/kiln-x 2>/dev/null && echo ETC-WRITABLE',
          'touch /kiln-x 2>/dev/null && echo ROOT-WRITABLE',
          'cat /etc/passwd',
        ].join('\n'),
      );
      const out = text(r.stdout);
      expect(out).not.toContain('VISIBLE');
      expect(out).not.toContain('WRITABLE');
      expect(out).not.toContain('secret');
      expect(out).toContain('sandbox:x:1000');
      expect(out).not.toMatch(/^(?!root|sandbox).*:x:/m);
    } finally {
      rmSync(hostTmp, { recursive: true, force: true });
      rmSync('/dev/shm/kiln-host-secret', { force: true });
    }
  });

  describe('no network', () => {
    let server: Server;
    let port = 0;
    let connections = 0;
    beforeAll(async () => {
      server = createServer((socket) => {
        connections++;
        socket.end('reached the host\n');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('cannot reach a TCP server on the host loopback, by any route', async () => {
      const r = await runSh(
        driver,
        [
          `python3 -c 'import socket; s=socket.create_connection(("127.0.0.1", ${port}), timeout=1); print(s.recv(100))' 2>&1 | tail -1`,
          `bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3' 2>&1 | tail -1`,
          `python3 -c 'import socket; socket.socket(socket.AF_INET6)' 2>&1 | tail -1`,
          `python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)' 2>&1 | tail -1`,
          `python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' 2>&1 | tail -1`,
          'cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " "',
        ].join('\n'),
      );
      const out = text(r.stdout);
      expect(out).not.toContain('reached the host');
      expect(out.match(/Address family not supported/g)?.length).toBeGreaterThanOrEqual(4);
      expect(out.trim().split('\n').pop()).toBe('lo');
      expect(connections).toBe(0);
    });
  });

  it('refuses nested user namespaces, mount, ptrace, keyctl, bpf, io_uring, perf and friends', async () => {
    const script = `
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if r == -1 else 0
buf = ctypes.create_string_buffer(256)
p = ctypes.addressof(buf)
print(json.dumps({
  'unshare_user': sc(272, 0x10000000),
  'unshare_mount': sc(272, 0x00020000),
  'setns': sc(308, 0, 0),
  'mount': sc(165, p, p, p, 0, 0),
  'umount2': sc(166, p, 0),
  'pivot_root': sc(155, p, p),
  'fsopen': sc(430, p, 0),
  'ptrace_attach': sc(101, 16, 1, 0, 0),
  'process_vm_readv': sc(310, 1, p, 1, p, 1, 0),
  'keyctl': sc(250, 0, -3, 0, 0, 0),
  'add_key': sc(248, p, p, 0, 0, -3),
  'bpf': sc(321, 0, p, 16),
  'io_uring_setup': sc(425, 1, p),
  'perf_event_open': sc(298, p, 0, -1, -1, 0),
  'userfaultfd': sc(323, 0),
  'open_by_handle_at': sc(304, -100, p, 0),
  'name_to_handle_at': sc(303, -100, p, p, p, 0),
  'clock_settime': sc(227, 0, p),
  'settimeofday': sc(164, p, 0),
  'init_module': sc(175, p, 0, p),
  'kexec_load': sc(246, 0, 0, 0, 0),
  'personality_no_aslr': sc(135, 0x0040000),
  'syslog': sc(103, 3, p, 10),
  'clone3': sc(435, p, 88),
}))
`;
    const r = await runSh(driver, `python3 -c '${script.replace(/'/g, "'\\''")}'; unshare -U true 2>&1; unshare -m true 2>&1`);
    const [json, ...rest] = text(r.stdout).trim().split('\n');
    const errnos = JSON.parse(json as string) as Record<string, number>;
    const EPERM = 1;
    const ENOSYS = 38;
    for (const [call, errno] of Object.entries(errnos)) {
      expect({ call, errno }).toEqual({ call, errno: call === 'clone3' ? ENOSYS : EPERM });
    }
    expect(rest.join('\n')).toMatch(/unshare failed: Operation not permitted[\s\S]*unshare failed: Operation not permitted/);
  });

  it('keeps signals inside: kill -9 -1 and killing host pids harm nothing outside', async () => {
    const victim = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const r = await runSh(driver, `kill -9 ${process.pid} ${victim.pid} 2>&1; kill -9 -1; echo survived`);
      // kill -9 -1 inside kills the sandbox's own processes only (the shell itself included).
      expect(['ok', 'runtime_error']).toContain(r.verdict);
      expect(text(r.stdout)).toMatch(/No such process/);
      expect(victim.exitCode).toBeNull();
      expect(victim.signalCode).toBeNull();
      expect(process.kill(victim.pid as number, 0)).toBe(true);
    } finally {
      victim.kill('SIGKILL');
    }
  });

  it('runs each live sandbox under its own unprivileged host uid', async () => {
    const marker = `kiln-uid-marker-${process.pid}-${Date.now()}`;
    const runs = [0, 1, 2, 3].map((i) => runSh(driver, `sleep 1.5 # ${marker}-${i}`));
    const sandboxesSeen = () =>
      new Set(
        hostProcessesWith(marker)
          .filter((p) => !p.cmdline.includes('kiln-launch'))
          .map((p) => /-(\d)$/.exec(p.cmdline.trim())?.[1]),
      ).size;
    const seen = await waitFor(() => sandboxesSeen() >= 4, 5000);
    const procs = hostProcessesWith(marker);
    await Promise.all(runs);
    expect(seen).toBe(true);
    // Each sandbox shows up as bwrap (twice) and sleep, all under its uid: group by the marker suffix.
    const uidsBySandbox = new Map<string, Set<number>>();
    // kiln-launch itself is root until it drops to the sandbox uid and execs bwrap: count what runs after.
    for (const p of procs.filter((q) => !q.cmdline.includes('kiln-launch'))) {
      const which = new RegExp(`${marker}-(\\d)`).exec(p.cmdline)?.[1];
      if (which === undefined) continue;
      if (!uidsBySandbox.has(which)) uidsBySandbox.set(which, new Set());
      uidsBySandbox.get(which)?.add(p.uid);
    }
    const all = [...uidsBySandbox.values()].map((s) => [...s]);
    expect(all.length).toBe(4);
    for (const uids of all) {
      expect(uids).toHaveLength(1);
      expect(uids[0]).toBeGreaterThan(0);
      expect(uids[0]).toBeGreaterThanOrEqual(1000);
    }
    expect(new Set(all.map((u) => u[0])).size).toBe(4);
  });

  it('never lets one sandbox see another one\'s /tmp, /dev/shm or workspace, even concurrently', async () => {
    const writer = runSh(
      driver,
      'echo a-secret > /tmp/a-secret; echo a-secret > /dev/shm/a-secret; echo a-secret > /workspace/a-secret; sleep 1.5',
    );
    await new Promise((r) => setTimeout(r, 400));
    const reader = await runSh(
      driver,
      'ls -a /tmp /dev/shm /workspace; cat /tmp/a-secret /dev/shm/a-secret /workspace/a-secret 2>/dev/null; ' +
        'ls /run/kiln 2>&1; find / -name a-secret -not -path "/proc/*" 2>/dev/null',
    );
    await writer;
    expect(text(reader.stdout)).not.toContain('a-secret');
  });
});
