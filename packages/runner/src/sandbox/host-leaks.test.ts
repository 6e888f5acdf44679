import { execFile } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { NATIVE_BUILD_DIR } from './native-paths.js';
import { PersistentSandbox } from './persistent/persistent-sandbox.js';
import { runtimeDir } from './runtime-dir.js';
import { runSh, TEST_LIMITS } from './test-support.js';

// Real bubblewrap, cgroups, uid pool and helpers, as root: what a local user of the runner's host sees
// of a sandbox, and what one sandbox can see of another through the files they share.
const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

const NOBODY = '65534';

/** Every host process whose cmdline or environ holds one of `needles`, read by `asUser` (or root). */
interface Hit {
  pid: number;
  file: 'cmdline' | 'environ';
  needle: string;
  exe: string | null;
}

const SCANNER = `
import json, os, sys
needles = [n.encode() for n in sys.argv[1:]]
hits = []
for pid in os.listdir('/proc'):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    for name in ('cmdline', 'environ'):
        try:
            with open('/proc/%s/%s' % (pid, name), 'rb') as f:
                data = f.read()
        except OSError:
            continue
        for n in needles:
            if n in data:
                try:
                    exe = os.readlink('/proc/%s/exe' % pid)
                except OSError:
                    exe = None
                hits.append({'pid': int(pid), 'file': name, 'needle': n.decode(), 'exe': exe})
print(json.dumps(hits))
`;

function scanHost(needles: string[], asUser?: string): Promise<Hit[]> {
  const [file, args] = asUser
    ? ['setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', '/usr/bin/python3', '-c', SCANNER, ...needles]]
    : ['/usr/bin/python3', ['-c', SCANNER, ...needles]];
  return new Promise((resolve, reject) => {
    // The scanner's own argv holds the needles: it skips itself, and its parent here is this test.
    execFile(file as string, args as string[], { env: {}, timeout: 30_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve((JSON.parse(stdout) as Hit[]).filter((h) => h.pid !== process.pid));
    });
  });
}

/** Resolves once `text` appeared on a run's stdout. */
function stdoutSignal(text: string): { seen: Promise<void>; onStdout: (chunk: Buffer) => void } {
  let out = '';
  let resolve: () => void = () => {};
  const seen = new Promise<void>((r) => (resolve = r));
  return {
    seen,
    onStdout: (chunk) => {
      out += chunk.toString('utf8');
      if (out.includes(text)) resolve();
    },
  };
}

const PAYLOAD_SHELL = '/usr/bin/dash';
/** The payload's own processes: its shell and the sleep it runs (both inherit its environment). */
const PAYLOAD_PROGRAMS = [PAYLOAD_SHELL, '/usr/bin/sleep'];

describe('nothing of a request in any argv or environment other host users can read', () => {
  for (const spawner of ['kiln-spawner', 'child_process.spawn (KILN_SPAWNER=0)']) {
    it(`one-shot job via ${spawner}: env values and args are in no host process's cmdline or environ`, async () => {
      const secretEnv = `envsecret-${process.pid}-${Date.now()}-sk_live_51H`;
      const secretArg = `argsecret-${process.pid}-${Date.now()}-ghp_x9`;
      const previous = process.env.KILN_SPAWNER;
      if (spawner !== 'kiln-spawner') process.env.KILN_SPAWNER = '0';
      try {
        const signal = stdoutSignal('running');
        const stop = new AbortController();
        const run = driver.run({
          // Sleeps until canceled: the scans run while the sandbox is alive.
          command: ['/bin/sh', '-c', 'echo "$KILN_API_SECRET $1"; echo running; sleep 60', 'sh', secretArg],
          env: { KILN_API_SECRET: secretEnv },
          limits: { ...TEST_LIMITS, wall_time_ms: 60_000 },
          onStdout: signal.onStdout,
          signal: stop.signal,
        });
        await signal.seen;
        let asNobody: Hit[];
        let asRoot: Hit[];
        try {
          asNobody = await scanHost([secretEnv, secretArg], NOBODY);
          asRoot = await scanHost([secretEnv, secretArg]);
        } finally {
          stop.abort();
        }
        const r = await run;
        expect(r.verdict).toBe('canceled');
        // The run itself saw both: they reached the payload, through no argv on the way.
        expect(r.stdout.toString()).toContain(`${secretEnv} ${secretArg}`);
        // Another local user reads no env value nor arg in bwrap's, kiln-launch's or kiln-spawner's
        // argv. What stays is the payload's own argv (its shell here): the kernel shows every process's
        // command line to every user unless /proc is mounted with hidepid (README: Host hardening).
        expect(asNobody.filter((h) => h.needle === secretEnv)).toEqual([]);
        expect(asNobody.filter((h) => h.needle === secretArg && h.file === 'environ')).toEqual([]);
        // The scans did see the sandbox: its shell's own argv holds the arg.
        expect(asRoot.some((h) => h.needle === secretArg && h.file === 'cmdline' && h.exe === PAYLOAD_SHELL)).toBe(true);
        // Root sees more: every cmdline and environ. The env value is only in the payload's environ,
        // the arg only in the payload's argv; never in a helper's.
        for (const h of asRoot) {
          expect(PAYLOAD_PROGRAMS, JSON.stringify(h)).toContain(h.exe);
          expect(h.file).toBe(h.needle === secretEnv ? 'environ' : 'cmdline');
        }
      } finally {
        if (previous === undefined) delete process.env.KILN_SPAWNER;
        else process.env.KILN_SPAWNER = previous;
      }
    });
  }

  it('refuses an arg with a NUL in it rather than split it in two on the way', async () => {
    const r = await driver.run({ command: ['/bin/echo', 'one\0two'], limits: TEST_LIMITS });
    expect(r.verdict).toBe('system_error');
    expect(r.stdout.toString()).toBe('');
    expect(r.error).toMatch(/contains NUL/);
  });

  it('persistent sandbox: its env values are in no host process\'s cmdline, nor in bwrap\'s environ', async () => {
    const secretEnv = `persistent-envsecret-${process.pid}-${Date.now()}`;
    const sbx = await driver.start({ limits: TEST_LIMITS, env: { KILN_API_SECRET: secretEnv } });
    if (!(sbx instanceof PersistentSandbox)) throw new Error('not a persistent sandbox');
    try {
      const echoed = await sbx.exec('echo "$KILN_API_SECRET"');
      expect(echoed.stdout.toString().trim()).toBe(secretEnv);
      expect(await scanHost([secretEnv], NOBODY)).toEqual([]);
      // As root: only kiln-init's environ holds it (it hands it to the commands it runs), no argv at all.
      const asRoot = await scanHost([secretEnv]);
      for (const h of asRoot) expect(h.file).toBe('environ');
      expect(asRoot.filter((h) => h.exe === '/usr/bin/bwrap')).toEqual([]);
    } finally {
      await sbx.destroy();
    }
  });
});


// Sandbox A takes every kind of lock on shared read-only files; sandbox B, running at the same time,
// probes them. With plain binds both would reach the host's inodes and B would see A's locks: a covert
// channel between tenants.
const LOCKER = `
import fcntl, struct, sys, time
held = []
for path in sys.argv[1:]:
    f = open(path, 'rb')
    fcntl.flock(f, fcntl.LOCK_EX)
    g = open(path, 'rb')
    fcntl.lockf(g, fcntl.LOCK_SH)  # a POSIX read lock: all a read-only fd can take
    held += [f, g]
print('locked', flush=True)
time.sleep(60)
`;
const PROBER = `
import fcntl, struct, sys
F_OFD_GETLK = 36
for path in sys.argv[1:]:
    f = open(path, 'rb')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        flock = 'free'
    except OSError:
        flock = 'held'
    probe = struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0)
    posix = 'free' if struct.unpack('hhqqi', fcntl.fcntl(f, fcntl.F_GETLK, probe))[0] == fcntl.F_UNLCK else 'held'
    ofd = 'free' if struct.unpack('hhqqi', fcntl.fcntl(f, F_OFD_GETLK, probe))[0] == fcntl.F_UNLCK else 'held'
    print(path, flock, posix, ofd)
`;
const SHARED_FILES = ['/usr/bin/python3', '/etc/ld.so.cache', '/etc/passwd', '/kiln-exec', '/dev/null'];

describe('no covert channel through locks on the shared read-only files', () => {
  it('a lock one sandbox holds on /usr, /etc, /dev/null or a helper is invisible in another running at the same time', async () => {
    const signal = stdoutSignal('locked');
    const stop = new AbortController();
    const locker = driver.run({
      command: ['/usr/bin/python3', '-c', LOCKER, ...SHARED_FILES],
      limits: { ...TEST_LIMITS, wall_time_ms: 60_000 },
      onStdout: signal.onStdout,
      signal: stop.signal,
    });
    try {
      await Promise.race([signal.seen, locker.then((r) => Promise.reject(new Error(`the locker ended: ${r.stderr}`)))]);
      const probe = await driver.run({ command: ['/usr/bin/python3', '-c', PROBER, ...SHARED_FILES], limits: TEST_LIMITS });
      expect(probe.verdict, probe.stderr.toString()).toBe('ok');
      expect(probe.stdout.toString().trim().split('\n')).toEqual(SHARED_FILES.map((p) => `${p} free free free`));
    } finally {
      stop.abort();
    }
    expect((await locker).verdict).toBe('canceled');
  });
});

/**
 * Checks what a sandbox printed (/proc/1/cmdline, then its mountinfo): no host folder of kiln's, and
 * the host uid nowhere but where the kernel itself puts it: the options of the root tmpfs bubblewrap
 * mounts as the sandbox user (the kernel shows a tmpfs's owner as a host uid, and bwrap 0.8 has no way
 * around its own root).
 */
function expectNoHostDetails(seen: string): void {
  const [pid1 = '', ...mountinfo] = seen.split('\n');
  const hostUid = /\/newroot \/ .* - tmpfs tmpfs \S*uid=(\d+)/.exec(seen)?.[1] ?? '';
  expect(Number(hostUid)).toBeGreaterThan(1000);
  for (const hostPath of [`${runtimeDir()}/workspaces`, `${runtimeDir()}/etc`, NATIVE_BUILD_DIR.replace(/\/$/, ''), process.cwd()]) {
    expect(seen).not.toContain(hostPath);
  }
  expect(pid1).not.toContain(hostUid);
  const ours = mountinfo.filter((l) => / - (overlay kiln|tmpfs kiln-workspace|tmpfs kiln-dev|devpts devpts) /.test(l));
  // /usr, /etc, the helper, /dev, /dev/pts, and the workspace's /workspace, /tmp and /dev/shm.
  expect(ours.length).toBeGreaterThanOrEqual(8);
  expect(mountinfo.filter((l) => / - devtmpfs /.test(l))).toEqual([]);
  for (const line of ours) {
    expect(line).not.toContain(hostUid);
    expect(line).not.toMatch(/[ ,](uid|gid)=/);
  }
}

const SHOW_HOST_DETAILS = 'tr "\\0" " " </proc/1/cmdline; echo; cat /proc/self/mountinfo';

describe('what the sandbox sees of its host in /proc/1/cmdline and mountinfo', () => {
  it('names no runtime, workspace or helper folder, and no host uid in what kiln mounts', async () => {
    const r = await runSh(driver, SHOW_HOST_DETAILS);
    expect(r.verdict).toBe('ok');
    expect(r.stdout.toString()).toMatch(/^\/usr\/bin\/bwrap --args 11 -- \/kiln-exec 12 \n/);
    expectNoHostDetails(r.stdout.toString());
  });

  it('in a persistent sandbox too', async () => {
    const sbx = await driver.start({ limits: TEST_LIMITS });
    if (!(sbx instanceof PersistentSandbox)) throw new Error('not a persistent sandbox');
    try {
      const r = await sbx.exec(SHOW_HOST_DETAILS);
      expect(r.stdout.toString()).toMatch(/^\/kiln-init --cpu-seconds \d+ \/run\/kiln\/init.sock \n/);
      expectNoHostDetails(r.stdout.toString());
    } finally {
      await sbx.destroy();
    }
  });
});
