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

