import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { SafeRoot, UnsafePathError } from './safe-fs.js';
import { runSh } from './test-support.js';

const driver = new BubblewrapDriver();
const host = mkdtempSync('/tmp/kiln-victim-');
writeFileSync(`${host}/secret.txt`, 'HOST-SECRET');
mkdirSync(`${host}/dir`);
writeFileSync(`${host}/dir/inner.txt`, 'HOST-INNER');
afterAll(async () => {
  await driver.drain();
  rmSync(host, { recursive: true, force: true });
});

describe('the workspace never follows links the sandbox plants', () => {
  it('collects only regular single-link files: symlinks, hard links, FIFOs and linked folders are skipped', async () => {
    const r = await runSh(
      driver,
      [
        'mkdir -p out/sub',
        'echo fine > out/ok.txt',
        'echo nested > out/sub/n.txt',
        `ln -s ${host}/secret.txt out/secret-link`,
        'ln -s /etc/shadow out/shadow',
        `ln -s ${host}/dir out/dir-link`,
        'ln -s /etc out/etc-link',
        'echo mine > out/hard-a && ln out/hard-a out/hard-b',
        'mkfifo out/fifo',
      ].join(' && '),
    );
    expect(r.verdict).toBe('ok');
    expect(r.files.map((f) => f.path).sort()).toEqual(['out/ok.txt', 'out/sub/n.txt']);
    const all = Buffer.concat(r.files.map((f) => f.content)).toString();
    expect(all).not.toMatch(/HOST-|root:/);
  });

  it('bounds the walk: a very deep tree does not stall collection', async () => {
    const r = await runSh(driver, 'd=out; i=0; while [ $i -lt 200 ]; do d=$d/d; i=$((i+1)); done; mkdir -p $d && echo deep > $d/f && echo top > out/top');
    expect(r.verdict).toBe('ok');
    expect(r.files.map((f) => f.path)).toEqual(['out/top']);
  });

  it('collects nothing when the output folder itself is a link to a host folder', async () => {
    const r = await runSh(driver, `ln -s ${host}/dir out`, {}, { collect: ['out/**', '**'] });
    expect(r.files).toEqual([]);
  });

  it('removal never crosses links: host files the sandbox linked to survive', async () => {
    const r = await runSh(driver, `ln -s ${host} victim && ln -s ${host}/secret.txt file && ln -s / root`);
    expect(r.verdict).toBe('ok');
    await driver.drain();
    expect(readFileSync(`${host}/secret.txt`, 'utf8')).toBe('HOST-SECRET');
    expect(readFileSync(`${host}/dir/inner.txt`, 'utf8')).toBe('HOST-INNER');
  });

  it('refuses bad paths for input files, before anything starts', async () => {
    for (const path of ['../escape', '/etc/passwd', 'a/../../b', '', 'nul\0byte']) {
      await expect(
        driver.run({
          command: ['true'],
          files: [{ path, content: 'x' }],
          limits: { cpu_time_ms: 1000, wall_time_ms: 2000, memory_bytes: 64 << 20, pids: 16, output_bytes: 1024, file_size_bytes: 1024, disk_bytes: 1 << 20 },
        }),
      ).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field: 'files.0.path' });
    }
  });
});

describe('SafeRoot', () => {
  const root = mkdtempSync('/tmp/kiln-saferoot-');
  const outside = mkdtempSync('/tmp/kiln-outside-');
  writeFileSync(`${outside}/target.txt`, 'OUTSIDE');
  symlinkSync(outside, `${root}/dirlink`);
  symlinkSync(`${outside}/target.txt`, `${root}/filelink`);
  writeFileSync(`${root}/a.txt`, 'A');
  linkSync(`${root}/a.txt`, `${root}/a-hard.txt`);
  mkdirSync(`${root}/mnt`);
  const safe = new SafeRoot(root);
  afterAll(() => {
    try {
      execFileSync('umount', [`${root}/mnt`]);
    } catch {
      // not mounted
    }
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('refuses to read or write through a symlinked folder or file', () => {
    expect(() => safe.readFile('dirlink/target.txt')).toThrow(UnsafePathError);
    expect(() => safe.writeFile('dirlink/new.txt', 'x', 0o644, { uid: 0, gid: 0 })).toThrow(UnsafePathError);
    expect(() => safe.readFile('filelink')).toThrow(UnsafePathError);
    expect(() => safe.writeFile('filelink', 'x', 0o644, { uid: 0, gid: 0 })).toThrow(UnsafePathError);
    expect(readFileSync(`${outside}/target.txt`, 'utf8')).toBe('OUTSIDE');
    expect(existsSync(`${outside}/new.txt`)).toBe(false);
  });

  it('refuses files with more than one hard link', () => {
    expect(() => safe.readFile('a.txt')).toThrow(/hard link/);
  });

  it('refuses to cross a mount point', () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'kiln-test', `${root}/mnt`]);
    writeFileSync(`${root}/mnt/x.txt`, 'X');
    expect(() => safe.readFile('mnt/x.txt')).toThrow(/mount point/);
  });

  it('writes and reads regular files below the root', () => {
    safe.writeFile('deep/er/file.txt', 'hello', 0o600, { uid: 0, gid: 0 });
    expect(safe.readFile('deep/er/file.txt').toString()).toBe('hello');
    safe.writeFile('deep/er/file.txt', 'again', 0o600, { uid: 0, gid: 0 });
    expect(safe.readFile('deep/er/file.txt').toString()).toBe('again');
  });
});
