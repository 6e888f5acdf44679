#!/usr/bin/env node
// Where a one-shot sandbox's time goes: python hello world run bare, then with one more layer at a time
// (bwrap with the sandbox's flags, + seccomp, + kiln-launch's uid drop and rlimits, + joining a cgroup),
// the set-up steps timed alone (uid lease, workspace tmpfs, cgroup create/remove), and the whole
// driver.run(). Rounds are interleaved. `node bench/sandbox/breakdown.mjs [--iterations N]`.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS } from '@kiln/core';
import {
  BubblewrapDriver,
  buildBwrapArgs,
  buildLaunchArgs,
  defaultUidPool,
  detectCgroupBackend,
  nativeHelperPath,
  requireBwrap,
  rlimitsFor,
  sandboxPasswdFile,
  SECCOMP_FD,
  seccompProgramPath,
  Workspace,
} from '@kiln/runner';
import { summarize } from './stats.mjs';

const { values: flags } = parseArgs({ options: { iterations: { type: 'string', default: '100' } } });
const iterations = Number(flags.iterations);
if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations wants a positive integer');

const PYTHON = ['/usr/bin/python3', '-c', 'print("hello")'];
const limits = { ...DEFAULT_LIMITS };

function run(program, args, extraFd) {
  return new Promise((resolve, reject) => {
    const stdio = ['ignore', 'pipe', 'pipe'];
    if (extraFd !== undefined) {
      while (stdio.length < SECCOMP_FD) stdio.push('ignore');
      stdio.push(extraFd);
    }
    const child = spawn(program, args, { env: {}, stdio });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (out === 'hello\n' ? resolve() : reject(new Error(`${program} ${code}: ${out} ${err}`))));
  });
}

async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main() {
  const uids = defaultUidPool();
  const cgroups = detectCgroupBackend();
  const driver = new BubblewrapDriver();
  const lease = uids.acquire();
  const workspace = Workspace.create({ uid: lease.uid, gid: lease.gid, diskBytes: limits.disk_bytes });
  const seccompPath = seccompProgramPath('no-network');
  const cgroup = cgroups.create(`bench-breakdown-${process.pid}`, { memoryBytes: limits.memory_bytes, pids: 4096 });
  const bwrapArgs = buildBwrapArgs({
    workspaceDir: workspace.workDir,
    tmpDir: workspace.tmpDir,
    shmDir: workspace.shmDir,
    seccompFd: SECCOMP_FD,
    cgroupBinds: cgroup.binds,
    passwdFile: sandboxPasswdFile(),
    command: PYTHON,
  });
  // bwrap run as root maps to root inside, which cannot enter the uid's 0700 tmpfs: plain folders instead.
  const rootDirs = mkdtempSync(`${tmpdir()}/kiln-breakdown-`);
  for (const d of ['work', 'tmp', 'shm']) mkdirSync(`${rootDirs}/${d}`);
  const rootBwrapArgs = buildBwrapArgs({
    workspaceDir: `${rootDirs}/work`,
    tmpDir: `${rootDirs}/tmp`,
    shmDir: `${rootDirs}/shm`,
    seccompFd: SECCOMP_FD,
    cgroupBinds: cgroup.binds,
    passwdFile: sandboxPasswdFile(),
    command: PYTHON,
  });
  const seccompAt = rootBwrapArgs.indexOf('--seccomp');
  const bwrapNoSeccomp = rootBwrapArgs.filter((_, i) => i !== seccompAt && i !== seccompAt + 1);
  const launch = (cgroupProcsFiles) =>
    buildLaunchArgs({
      cgroupProcsFiles,
      rlimits: rlimitsFor(limits),
      uid: lease.uid,
      gid: lease.gid,
      fds: [{ fd: SECCOMP_FD, path: seccompPath }],
      program: requireBwrap(),
      args: bwrapArgs,
    });
  const joinCgroup = cgroups.create(`bench-join-${process.pid}`, { memoryBytes: limits.memory_bytes, pids: 4096 });
  const runSh = (script) =>
    new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', script], { env: {}, stdio: 'ignore' });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sh ${code}`))));
    });
  const bwrap = requireBwrap();
  const launcher = nativeHelperPath('kiln-launch');

  const steps = {
    'bare python': () => run(PYTHON[0], PYTHON.slice(1)),
    'bwrap (as root, no seccomp)': () => run(bwrap, bwrapNoSeccomp),
    'bwrap + seccomp': async () => {
      const fd = openSync(seccompPath, 'r');
      try {
        await run(bwrap, rootBwrapArgs, fd);
      } finally {
        closeSync(fd);
      }
    },
    'kiln-launch (uid drop, rlimits) + bwrap + seccomp': () => run(launcher, launch([])),
    '+ joining a cgroup': () => run(launcher, launch(cgroup.procsFiles)),
    // The same tiny shell with and without moving itself into a cgroup: the difference is the cgroup v1
    // migration, which waits for an RCU grace period unless another migration happened just before.
    'sh writing its pid to /dev/null': () => runSh('echo $$ > /dev/null'),
    'sh writing its pid to cgroup.procs (join)': () => runSh(`echo $$ > ${joinCgroup.procsFiles[1]}`),
    'uid lease + release': async () => uids.acquire().release(),
    'workspace tmpfs mount + unmount': async () => {
      const w = Workspace.create({ uid: lease.uid, gid: lease.gid, diskBytes: limits.disk_bytes });
      await w.remove();
    },
    'cgroup create (removal is async)': async () => {
      const c = cgroups.create(`bench-step-${process.pid}-${Math.random().toString(36).slice(2)}`, {
        memoryBytes: limits.memory_bytes,
        pids: limits.pids,
      });
      void c.remove();
    },
    'driver.run() whole one-shot': async () => {
      const r = await driver.run({ command: PYTHON, limits });
      if (r.verdict !== 'ok') throw new Error(`one-shot: ${r.verdict} ${r.error ?? ''}`);
    },
  };
  const samples = Object.fromEntries(Object.keys(steps).map((k) => [k, []]));
  for (let i = 0; i < iterations + 5; i++) {
    for (const [name, fn] of Object.entries(steps)) {
      const t = await timed(fn);
      if (i >= 5) samples[name].push(t);
    }
  }
  rmSync(rootDirs, { recursive: true, force: true });
  await cgroup.remove();
  await joinCgroup.remove();
  await workspace.remove();
  lease.release();
  await driver.drain();

  const bare = summarize(samples['bare python']).p50;
  console.log(`one-shot breakdown, ${iterations} interleaved rounds (p50 / p90, and p50 over bare python)`);
  for (const [name, values] of Object.entries(samples)) {
    const s = summarize(values);
    const over = /^(bwrap|kiln-launch|\+ joining|driver)/.test(name) ? `  (+${(s.p50 - bare).toFixed(2)})` : '';
    console.log(`  ${name.padEnd(52)} ${s.p50.toFixed(2).padStart(7)} / ${s.p90.toFixed(2).padStart(7)} ms${over}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
