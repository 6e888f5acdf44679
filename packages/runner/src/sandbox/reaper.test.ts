import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CgroupV2Backend } from './cgroups/v2.js';
import { reapStaleSandboxes } from './reaper.js';

// A fake cgroup2 tree and a runtime folder of its own: the reaper must never touch real sandboxes of
// tests running at the same time, so this test gives it a world of its own.
const cgroupRoot = mkdtempSync('/tmp/kiln-reaper-cg-');
const runtime = mkdtempSync('/tmp/kiln-reaper-run-');
const previousRuntime = process.env.KILN_RUNTIME_DIR;
process.env.KILN_RUNTIME_DIR = runtime;
afterAll(() => {
  if (previousRuntime === undefined) delete process.env.KILN_RUNTIME_DIR;
  else process.env.KILN_RUNTIME_DIR = previousRuntime;
  rmSync(cgroupRoot, { recursive: true, force: true });
  rmSync(runtime, { recursive: true, force: true });
});

const hourAgo = new Date(Date.now() - 3600_000);

function fakeCgroup(name: string, procs: string, old: boolean): void {
  const dir = `${cgroupRoot}/kiln/${name}`;
  mkdirSync(dir, { recursive: true });
  // A real empty cgroup's folder can be removed with its files; a fake one must hold no file at all.
  if (procs !== '') writeFileSync(`${dir}/cgroup.procs`, procs);
  if (old) utimesSync(dir, hourAgo, hourAgo);
}

function fakeWorkspace(id: string, old: boolean): string {
  const dir = `${runtime}/workspaces/${id}`;
  mkdirSync(dir, { recursive: true });
  if (old) utimesSync(dir, hourAgo, hourAgo);
  return dir;
}

describe('reapStaleSandboxes', () => {
  it('removes old empty cgroups and orphaned old workspaces, and nothing live or young', async () => {
    const backend = new CgroupV2Backend(cgroupRoot);
    fakeCgroup('sbx_dead', '', true);
    fakeCgroup('sbx_live', `${process.pid}\n`, true);
    fakeCgroup('sbx_young', '', false);
    const orphan = fakeWorkspace('sbx_gone', true);
    const liveWs = fakeWorkspace('sbx_live', true);
    const youngWs = fakeWorkspace('sbx_new', false);
    const locks = mkdtempSync(`${runtime}/uids-`);
    writeFileSync(`${locks}/2000001.lock`, '4194305 1\n'); // above the default pid_max: dead
    writeFileSync(`${locks}/2000002.lock`, `${process.pid}\n`); // alive
    const report = await reapStaleSandboxes({ cgroups: backend, minAgeMs: 60_000, uidLockDir: locks });
    expect(report.uids).toEqual([2_000_001]);
    expect(existsSync(`${locks}/2000002.lock`)).toBe(true);
    expect(report.cgroups).toEqual(['sbx_dead']);
    expect(report.workspaces).toEqual(['sbx_gone']);
    expect(existsSync(`${cgroupRoot}/kiln/sbx_dead`)).toBe(false);
    expect(existsSync(`${cgroupRoot}/kiln/sbx_live`)).toBe(true);
    expect(existsSync(`${cgroupRoot}/kiln/sbx_young`)).toBe(true);
    expect(existsSync(orphan)).toBe(false);
    expect(existsSync(liveWs)).toBe(true);
    expect(existsSync(youngWs)).toBe(true);
  });
});
