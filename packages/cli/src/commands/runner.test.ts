import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readRunnerToken } from './runner.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-runner-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = fileURLToPath(new URL('../../bin/kiln.js', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));

/** Issue 7, point 7: the runner's join token never travels in argv, where `ps` shows it to every user. */
describe('the runner join token', () => {
  it('comes from KILN_RUNNER_TOKEN or a private file, never from --token', () => {
    expect(readRunnerToken({}, { KILN_RUNNER_TOKEN: 'from-env' })).toBe('from-env');
    const file = join(dir, 'token');
    writeFileSync(file, 'from-file\n', { mode: 0o600 });
    expect(readRunnerToken({ tokenFile: file }, { KILN_RUNNER_TOKEN: 'from-env' })).toBe('from-file');
    expect(() => readRunnerToken({ token: 'in-argv' }, {})).toThrow(/KILN_RUNNER_TOKEN or pass --token-file/);
    chmodSync(file, 0o644);
    expect(() => readRunnerToken({ tokenFile: file }, {})).toThrow(`chmod 600 ${file}`);
    expect(() => readRunnerToken({}, {})).toThrow(/no runner join token/);
  });

  it.skipIf(!built)('kiln runner --token is refused with the way to pass it instead', () => {
    const run = spawnSync(process.execPath, [bin, 'runner', '--server', 'http://127.0.0.1:9', '--token', 'visible-in-ps'], {
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('--token is not taken');
    expect(run.stderr).toContain('KILN_RUNNER_TOKEN');
  });
});
