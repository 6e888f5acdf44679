import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeSyncData } from '../../src/sandbox/launch-args.js';

const build = fileURLToPath(new URL('../build/', import.meta.url));
const launch = `${build}kiln-launch`;
const exec = `${build}kiln-exec`;
const UID = 2_400_000 + (process.pid % 1000);
const nul = (strings: string[]) => Buffer.from(strings.map((s) => `${s}\0`).join(''));

/** kiln-launch with a workspace and a sync handshake; answers "G" plus `sections`; resolves with its result. */
async function launchWithSync(extra: string[], sections: Buffer[], program: string[]) {
  const dir = mkdtempSync('/tmp/kiln-exec-ws-');
  const child = spawn(
    launch,
    ['--workspace', `${dir}:${1024 * 1024}:256`, ...extra, '--sync-fd', '3', '--uid', String(UID), '--gid', String(UID), '--', ...program],
    { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const sync = child.stdio[3] as Socket;
  sync.on('error', () => {});
  await new Promise((resolve) => sync.once('data', resolve));
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(dir));
  const devNull = existsSync(`${dir}/dev/null`) ? statSync(`${dir}/dev/null`) : undefined;
  sync.end(encodeSyncData(sections));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(spawnSync(launch, ['umount', dir]).status).toBe(0);
  return { code, stdout, stderr, mounts, devNull };
}

describe.runIf(existsSync(launch) && existsSync(exec))('kiln-launch sync memfds, overlays and devices; kiln-exec', () => {
  it('hands each section after "G" to the program as a memfd; kiln-exec runs the argv of one and closes it', async () => {
    const r = await launchWithSync(
      ['--sync-memfd', '11', '--sync-memfd', '12'],
      [Buffer.from('options for bwrap'), nul(['/bin/sh', '-c', 'cat /proc/self/fd/11; echo; echo "$0 $1"; [ -e /proc/self/fd/12 ] || echo closed', 'name', 'secret arg'])],
      [exec, '12'],
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('options for bwrap\nname secret arg\nclosed\n');
  });

  it('mounts read-only overlays and a /dev of the sandbox\'s own, with no host uid or folder in their options', async () => {
    const r = await launchWithSync(['--overlay', '/usr=usr', '--devices', 'dev'], [], ['/bin/true']);
    expect(r.code).toBe(0);
    const overlay = r.mounts.find((l) => l.includes('/usr overlay')) ?? '';
    expect(overlay).toMatch(/^kiln \S+\/usr overlay ro,.*lowerdir=\/proc\/self\/fd\/\d+:\/proc\/self\/fd\/\d+/);
    expect(r.devNull?.isCharacterDevice()).toBe(true);
    expect(r.mounts.some((l) => / devpts /.test(l))).toBe(true);
    for (const line of r.mounts) expect(line).not.toMatch(/[ ,](uid|gid)=\d{4,}/);
  });

  it('refuses sections without a sync fd, and kiln-exec refuses a malformed argv or a missing program', async () => {
    const noSync = spawnSync(launch, ['--sync-memfd', '11', '--uid', String(UID), '--gid', String(UID), '--', '/bin/true'], { encoding: 'utf8' });
    expect(noSync.status).toBe(125);
    const unterminated = await launchWithSync(['--sync-memfd', '12'], [Buffer.from('/bin/echo')], [exec, '12']);
    expect(unterminated.code).toBe(125);
    expect(unterminated.stderr).toMatch(/^kiln-exec: the command line must be NUL-terminated/);
    const missing = await launchWithSync(['--sync-memfd', '12'], [nul(['no-such-program-kiln'])], [exec, '12']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^kiln-exec: execvp no-such-program-kiln: /);
  });
});
