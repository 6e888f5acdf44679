import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The built CLI, as a user runs it (`npm run build` first; scripts/test.sh does).
const bin = fileURLToPath(new URL('../../bin/kiln.js', import.meta.url));
const dir = mkdtempSync('/tmp/kiln-exec-cli-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kiln(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input: input ?? '', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, content: string): string {
  const path = `${dir}/${name}`;
  writeFileSync(path, content);
  return path;
}

describe('kiln exec (built CLI)', () => {
  it('is built', () => {
    expect(existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)))).toBe(true);
  });

  it('prints the program output, passes arguments after --, and exits with its code', () => {
    const prog = file('hello.py', 'import sys\nprint("hello", *sys.argv[1:])\nprint("oops", file=sys.stderr)\nsys.exit(4)\n');
    const r = kiln(['exec', '--language', 'python', prog, '--', 'a', '-b']);
    expect(r).toEqual({ status: 4, stdout: 'hello a -b\n', stderr: 'oops\n' });
  });

  it('--json prints the whole result; --stdin feeds standard input', () => {
    const prog = file('echo.js', 'process.stdin.pipe(process.stdout)\n');
    const input = file('input.txt', 'from a file\n');
    const r = kiln(['exec', '--json', '--stdin', input, prog]);
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ verdict: 'ok', exit_status: { code: 0, signal: null }, stdout: 'from a file\n', stderr: '' });
    expect(result.resource_usage).toMatchObject({ cpu_time_ms: expect.any(Number), wall_time_ms: expect.any(Number) });
    expect((result.resource_usage as { memory_peak_bytes: number }).memory_peak_bytes).toBeGreaterThan(0);
  });

  it('applies limit flags: a wall-time attack ends in time_limit', () => {
    const prog = file('sleep.sh', 'sleep 30\n');
    const r = kiln(['exec', '--language', 'sh', '--wall-time-ms', '300', '--json', prog]);
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'time_limit', exit_status: { signal: 'SIGKILL' } });
    expect(r.status).toBe(137);
  });

  it('reports compile errors of compiled languages', () => {
    const prog = file('broken.c', 'int main( {\n');
    const r = kiln(['exec', prog]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error/);
    expect(r.stderr).toMatch(/kiln: compile_error/);
  });

  it('answers bad flags and unknown languages with one line and a non-zero exit', () => {
    const prog = file('x.py', 'print(1)\n');
    for (const args of [
      ['exec', '--language', 'brainfuck', prog],
      ['exec', '--memory-bytes', 'lots', prog],
      ['exec', '--memory-bytes', '1', prog],
      ['exec', '--bogus', prog],
      ['exec', file('noext', 'x')],
    ]) {
      const r = kiln(args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^kiln: /);
    }
  });
});
