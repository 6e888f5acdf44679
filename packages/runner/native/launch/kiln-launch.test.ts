import { spawn, spawnSync } from 'node:child_process';
import type { Socket } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const launch = fileURLToPath(new URL('../build/kiln-launch', import.meta.url));
const UID = 2_300_000 + (process.pid % 1000);

function run(args: string[]) {
  const r = spawnSync(launch, args, { encoding: 'utf8' });
  return { status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

describe.runIf(existsSync(launch))('kiln-launch', () => {
  it('refuses to run anything as root or without ids', () => {
    expect(run(['--uid', '0', '--gid', '0', '--', '/usr/bin/id'])).toMatchObject({ status: 125, stdout: '' });
    expect(run(['--', '/usr/bin/id']).stderr).toMatch(/^kiln-launch: --uid and --gid/);
    expect(run(['--uid', 'abc', '--gid', '1', '--', '/usr/bin/id']).status).toBe(125);
    expect(run(['--bogus', 'x', '--', '/usr/bin/id']).stderr).toMatch(/unknown option/);
  });

  it('drops every group, the gid and the uid before exec', () => {
    const r = run(['--uid', String(UID), '--gid', String(UID), '--', '/bin/sh', '-c', 'id -u; id -g; id -G; grep ^Cap /proc/self/status']);
    const [uid, gid, groups, ...caps] = r.stdout.split('\n');
    expect([uid, gid, groups]).toEqual([String(UID), String(UID), String(UID)]);
    for (const line of caps) expect(line).toMatch(/0000000000000000$|CapBnd/);
    expect(caps.find((l) => l.startsWith('CapEff'))).toMatch(/0000000000000000$/);
  });

  it('sets rlimits: open files, file size, core; CPU time ends in SIGXCPU', () => {
    const r = run([
      ...['--rlimit', 'nofile=20:20', '--rlimit', 'fsize=4096:4096', '--rlimit', 'core=0:0'],
      ...['--uid', String(UID), '--gid', String(UID), '--', '/bin/sh', '-c', 'ulimit -n; ulimit -f; ulimit -c'],
    ]);
    // `ulimit -f` counts 512-byte blocks.
    expect(r.stdout.split('\n')).toEqual(['20', '8', '0']);
    const cpu = run(['--rlimit', 'cpu=1:3', '--uid', String(UID), '--gid', String(UID), '--', '/bin/sh', '-c', 'while :; do :; done']);
    expect(cpu.signal).toBe('SIGXCPU');
    expect(run(['--rlimit', 'bogus=1:1', '--uid', String(UID), '--gid', String(UID), '--', '/bin/true']).status).toBe(125);
  });

  it('joins the cgroups it is given before dropping privileges', () => {
    const dir = `/sys/fs/cgroup/pids/kiln-launch-test-${process.pid}`;
    mkdirSync(dir, { recursive: true });
    try {
      const r = run(['--cgroup', `${dir}/cgroup.procs`, '--uid', String(UID), '--gid', String(UID), '--', '/bin/cat', '/proc/self/cgroup']);
      expect(r.stdout).toMatch(new RegExp(`pids:/kiln-launch-test-${process.pid}$`, 'm'));
      expect(run(['--cgroup', '/nonexistent/cgroup.procs', '--uid', String(UID), '--gid', String(UID), '--', '/bin/true']).status).toBe(125);
    } finally {
      rmdirSync(dir);
    }
  });

  it('opens a file read-only on the requested fd for the program', () => {
    const dir = mkdtempSync('/tmp/kiln-launch-fd-');
    writeFileSync(`${dir}/program`, 'the bpf bytes');
    try {
      const r = run(['--fd', `10=${dir}/program`, '--uid', String(UID), '--gid', String(UID), '--', '/bin/cat', '/proc/self/fd/10']);
      expect(r.stdout).toBe('the bpf bytes');
      expect(run(['--fd', '1=/etc/hostname', '--uid', String(UID), '--gid', String(UID), '--', '/bin/true']).status).toBe(125);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('mounts a size-capped tmpfs owned by the sandbox uid, and unmounts and removes it', () => {
    const dir = mkdtempSync('/tmp/kiln-launch-mnt-');
    expect(run(['mount-tmpfs', dir, String(1024 * 1024), '64', String(UID), String(UID)]).status).toBe(0);
    const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.includes(dir)) ?? '';
    expect(line).toMatch(/tmpfs/);
    expect(line).toMatch(/size=1024k/);
    expect(line).toMatch(/nosuid,nodev/);
    const full = spawnSync('/bin/sh', ['-c', `head -c 2M /dev/zero > ${dir}/fill`], { encoding: 'utf8' });
    expect(full.status).not.toBe(0);
    expect(full.stderr).toMatch(/No space left/);
    const second = mkdtempSync('/tmp/kiln-launch-mnt-');
    expect(run(['mount-tmpfs', second, String(1024 * 1024), '64', String(UID), String(UID)]).status).toBe(0);
    // One call removes many (the runner batches removals).
    expect(run(['umount', dir, second]).status).toBe(0);
    for (const d of [dir, second]) {
      expect(existsSync(d)).toBe(false);
      expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(d);
    }
  });

  it('mounts the workspace itself and waits for the runner\'s go-ahead on the sync fd', async () => {
    const dir = mkdtempSync('/tmp/kiln-launch-ws-');
    const child = spawn(
      launch,
      ['--workspace', `${dir}:${1024 * 1024}:256`, '--sync-fd', '3', '--uid', String(UID), '--gid', String(UID), '--', '/bin/cat', `${dir}/work/from-runner`],
      { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
    );
    const sync = child.stdio[3] as Socket;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((resolve) => sync.once('data', resolve));
    // Ready: the tmpfs is mounted with its three folders owned by the sandbox uid; nothing ran yet.
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(dir);
    for (const sub of ['work', 'tmp', 'shm']) expect(statSync(`${dir}/${sub}`).uid).toBe(UID);
    writeFileSync(`${dir}/work/from-runner`, 'written during the handshake');
    sync.end('G');
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(out).toBe('written during the handshake');
    expect(run(['umount', dir]).status).toBe(0);

    // Without a go-ahead, nothing runs.
    const dir2 = mkdtempSync('/tmp/kiln-launch-ws-');
    const refused = spawn(launch, ['--workspace', `${dir2}:65536:64`, '--sync-fd', '3', '--uid', String(UID), '--gid', String(UID), '--', '/bin/echo', 'ran'], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const sync2 = refused.stdio[3] as Socket;
    await new Promise((resolve) => sync2.once('data', resolve));
    sync2.end('X');
    expect(await new Promise((resolve) => refused.on('close', resolve))).toBe(125);
    expect(run(['umount', dir2]).status).toBe(0);
  });
});
