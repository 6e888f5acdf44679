import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { detectCgroupBackend } from './cgroups/index.js';
import { nativeHelperPath } from './native-paths.js';
import { waitFor } from './test-support.js';
import { removeStaleUidLocks, UidPool } from './uid-pool.js';

const lockDir = mkdtempSync('/tmp/kiln-uidpool-');
afterAll(() => rmSync(lockDir, { recursive: true, force: true }));

describe('UidPool', () => {
  it('never hands out 0 or a privileged range', () => {
    expect(() => new UidPool({ firstUid: 0, count: 10, lockDir })).toThrow();
    expect(() => new UidPool({ firstUid: 500, count: 10, lockDir })).toThrow();
  });

  it('gives distinct uids until the pool is exhausted, and reuses released ones', () => {
    const pool = new UidPool({ firstUid: 3_000_000, count: 3, lockDir });
    const leases = [pool.acquire(), pool.acquire(), pool.acquire()];
    expect(new Set(leases.map((l) => l.uid)).size).toBe(3);
    for (const l of leases) expect(l.uid).toBeGreaterThanOrEqual(3_000_000);
    expect(() => pool.acquire()).toThrow(/no free sandbox uid/);
    leases[1]?.release();
    expect(pool.acquire().uid).toBe(leases[1]?.uid);
  });

  it('reclaims a lock whose owner process is dead, but not a live one', () => {
    const pool = new UidPool({ firstUid: 3_100_000, count: 2, lockDir });
    // pid 2^22+1 is above pid_max's default: certainly dead. pid 1 is alive.
    writeFileSync(`${lockDir}/3100000.lock`, '4194305 123\n');
    writeFileSync(`${lockDir}/3100001.lock`, `1\n`);
    const lease = pool.acquire();
    expect(lease.uid).toBe(3_100_000);
    expect(() => pool.acquire()).toThrow(/no free sandbox uid/);
  });

  it('is safe across processes: concurrent processes never share a uid', async () => {
    // Child processes run the built module (Node 20 cannot run TypeScript): `npm run build` first.
    const modulePath = fileURLToPath(new URL('../../dist/sandbox/uid-pool.js', import.meta.url));
    expect(existsSync(modulePath), `${modulePath} is missing: run npm run build`).toBe(true);
    const dir = mkdtempSync(`${lockDir}/cross-`);
    // Each child process grabs 20 uids from one shared pool of 100 and prints them; they hold them
    // until all have finished (they wait for stdin to close).
    const script = `
      const { UidPool } = await import(${JSON.stringify(modulePath)});
      const pool = new UidPool({ firstUid: 3_200_000, count: 100, lockDir: ${JSON.stringify(dir)} });
      const got = [];
      for (let i = 0; i < 20; i++) got.push(pool.acquire().uid);
      process.stdout.write(JSON.stringify(got) + '\\n');
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));
    `;
    const children = [0, 1, 2, 3].map(() =>
      spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const outputs = await Promise.all(
      children.map(
        (c) =>
          new Promise<number[]>((resolve, reject) => {
            let out = '';
            c.stdout.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
            });
            c.on('exit', (code) => reject(new Error(`child exited ${code}: ${out}`)));
          }),
      ),
    );
    const all = outputs.flat();
    expect(all).toHaveLength(80);
    expect(new Set(all).size).toBe(80);
    for (const c of children) c.stdin.end();
    await Promise.all(children.map((c) => new Promise((r) => c.on('exit', r))));
    // The dead children's locks are stale now: a new pool reclaims them all.
    const pool = new UidPool({ firstUid: 3_200_000, count: 100, lockDir: dir });
    const again = Array.from({ length: 100 }, () => pool.acquire().uid);
    expect(new Set(again).size).toBe(100);
    expect(readdirSync(dir).filter((f) => f.endsWith('.reclaim'))).toEqual([]);
    expect(existsSync(dir)).toBe(true);
  });

  it('reclaims the uid of a dead holder only after killing the sandbox still running as it; never a process outside a sandbox', async () => {
    // A runner killed while it built a sandbox can leave the sandbox running, and its uid's lock names the
    // dead runner: reclaimed as is, the uid would go to a new sandbox while the old one still runs as it.
    const backend = detectCgroupBackend();
    const cg = backend.create(`sbx_uidtest${process.pid}`, { memoryBytes: 64 << 20, pids: 8 });
    const orphanUid = 3_300_000 + (process.pid % 1000) * 2;
    const outsiderUid = orphanUid + 1;
    // The orphan joins the sandbox cgroup before it execs, as kiln-launch does for every sandbox.
    const orphan = spawn(nativeHelperPath('kiln-launch'), [...cg.procsFiles.flatMap((f) => ['--cgroup', f]), '--uid', String(orphanUid), '--gid', String(orphanUid), '--', '/bin/sleep', '60'], { stdio: 'ignore' });
    // Same kind of uid, no sandbox cgroup: a pool range set over a real user's uids must not kill them.
    const outsider = spawn('/bin/sleep', ['60'], { uid: outsiderUid, gid: outsiderUid, stdio: 'ignore' });
    const orphanEnd = new Promise<string | null>((resolve) => orphan.on('exit', (_code, signal) => resolve(signal)));
    try {
      expect(await waitFor(() => cg.pids().length === 1)).toBe(true);
      const dir = mkdtempSync(`${lockDir}/orphans-`);
      writeFileSync(`${dir}/${orphanUid}.lock`, '4194305 123\n');
      writeFileSync(`${dir}/${outsiderUid}.lock`, '4194305 123\n');
      expect(removeStaleUidLocks(dir).sort()).toEqual([orphanUid, outsiderUid]);
      expect(await orphanEnd).toBe('SIGKILL');
      expect(outsider.exitCode).toBeNull();
      expect(() => process.kill(outsider.pid!, 0)).not.toThrow();
    } finally {
      orphan.kill('SIGKILL');
      outsider.kill('SIGKILL');
      cg.killAll();
      await cg.remove();
    }
  });
});
