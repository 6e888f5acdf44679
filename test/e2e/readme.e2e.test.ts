import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The README is a tutorial that runs: its shell blocks marked `<!-- readme-test -->` are run in order,
 * as one bash script (set -euo pipefail), in an empty folder where a real `kiln up` was started, the
 * way a reader runs them in a second terminal. Each `# → …` line must be a line of what the commands
 * before it printed (`…` stands for anything).
 */

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'packages/cli/bin/kiln.js');
const MARK = '@@readme-mark';

export interface ReadmeScript {
  script: string;
  /** Per mark, the lines its segment of output must contain. */
  expectations: string[][];
}

/** The marked blocks as one script, with a mark echoed before each run of `# → …` lines. */
export function readmeScript(markdown: string): ReadmeScript {
  const blocks = [...markdown.matchAll(/<!-- readme-test -->\n```sh\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
  const lines: string[] = [];
  const expectations: string[][] = [];
  for (const block of blocks) {
    let inRun = false;
    for (const line of block.split('\n')) {
      const expected = /^\s*#\s*→ (.*)$/.exec(line);
      if (expected) {
        if (!inRun) {
          lines.push(`echo ${MARK}`);
          expectations.push([]);
          inRun = true;
        }
        expectations.at(-1)!.push(expected[1]!.trim());
      } else {
        inRun = false;
      }
      lines.push(line);
    }
  }
  return { script: ['set -euo pipefail', ...lines, `echo ${MARK}`].join('\n'), expectations };
}

const asPattern = (expected: string) => new RegExp(`^${expected.split('…').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);

describe('the README runs as written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-readme-'));
  let up: ChildProcess | undefined;
  let url = '';

  beforeAll(async () => {
    // The reader's folder: `npx kiln` finds the checkout's CLI, as it does from the repository root.
    mkdirSync(join(dir, 'node_modules/.bin'), { recursive: true });
    symlinkSync(CLI, join(dir, 'node_modules/.bin/kiln'));
    // …and has the SDK installed under its published name, as "Installing the CLI and the SDK" says.
    symlinkSync(join(ROOT, 'packages/sdk'), join(dir, 'node_modules/kiln-sandbox-sdk'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'reader', private: true }));
    up = spawn(process.execPath, [CLI, 'up', '--port', '0', '--capacity', '2'], {
      cwd: dir,
      // The egress walkthrough's stand-in API is on 127.0.0.2, which the operator opens as the README says.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_LOG_LEVEL: 'warn', KILN_EGRESS_ALLOW_PRIVATE_CIDRS: '127.0.0.2/32' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    url = await new Promise<string>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`kiln up did not get ready: ${stderr}`)), 90_000);
      up!.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const ready = /local runner ready/.test(stderr) && /listening on (http:\/\/\S+)/.exec(stderr);
        if (ready) {
          clearTimeout(timer);
          done(ready[1]!);
        }
      });
      up!.once('exit', (code) => fail(new Error(`kiln up exited (${code}): ${stderr}`)));
    });
  }, 120_000);

  afterAll(async () => {
    if (up && up.exitCode === null && up.signalCode === null) {
      const exited = new Promise((r) => up!.once('exit', r));
      up.kill('SIGTERM');
      const timer = setTimeout(() => up!.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('runs every readme-test block with exit 0 and prints what each `# →` line says', () => {
    const { script, expectations } = readmeScript(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    expect(expectations.length).toBeGreaterThanOrEqual(10);
    const run = spawnSync('bash', ['-c', script], {
      cwd: dir,
      env: { PATH: `${join(dir, 'node_modules/.bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: dir, KILN_URL: url },
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    const segments = run.stdout.replace(/\r/g, '').split(`${MARK}\n`);
    expectations.forEach((expected, i) => {
      const printed = segments[i]!.split('\n');
      for (const line of expected) expect(printed.some((p) => asPattern(line).test(p)), `${line}\nin:\n${segments[i]}`).toBe(true);
    });
  }, 320_000);
});
