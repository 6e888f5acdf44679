import type { Limits } from '@kiln/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { parseCompileReport } from '../sandbox/one-shot.js';
import { TEST_LIMITS } from '../sandbox/test-support.js';
import { buildOneShotSpec, type CodeRequest } from './spec.js';

const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

// The compiler needs more room than the limit tests' sandboxes.
const LIMITS: Limits = { ...TEST_LIMITS, memory_bytes: 384 * 1024 * 1024, wall_time_ms: 20_000 };

const run = (request: Omit<CodeRequest, 'language'> & { language?: string }) => driver.run(buildOneShotSpec({ language: 'c', ...request }, LIMITS));

/** A compiled language's compile step: its own limits and its own result, apart from the run (issue 12, point 3). */
describe('compile step', () => {
  it('reports the compile apart from the run: warnings in compile.stderr, the run\'s output and usage its own', async () => {
    const r = await run({ code: '#include <stdio.h>\nint main(){ int unused; printf("ran\\n"); fprintf(stderr, "run err\\n"); return 2; }', compilerOptions: '-Wall' });
    expect(r.compile).toMatchObject({ verdict: 'ok', exit_status: { code: 0, signal: null }, stdout: '', output_truncated: false });
    expect(r.compile!.stderr).toMatch(/unused/);
    expect(r.compile!.resource_usage.wall_time_ms).toBeGreaterThan(0);
    expect(r.compile!.resource_usage.cpu_time_ms).toBeGreaterThan(0);
    expect({ verdict: r.verdict, stdout: r.stdout.toString(), stderr: r.stderr.toString(), code: r.exit_status.code }).toEqual({
      verdict: 'runtime_error',
      stdout: 'ran\n',
      stderr: 'run err\n',
      code: 2,
    });
  }, 60_000);

  it('a failed compile is compile_error with the compiler\'s messages in its result and in stderr, and no run', async () => {
    const r = await run({ code: 'int main( {' });
    expect(r.verdict).toBe('compile_error');
    expect(r.compile).toMatchObject({ verdict: 'compile_error', exit_status: { code: 1, signal: null } });
    expect(r.compile!.stderr).toMatch(/error/);
    expect(r.stderr.toString()).toBe(r.compile!.stderr);
  }, 60_000);

  it('stops a compile past its own timeout as time_limit, while the run keeps its limits', async () => {
    // D runs f() at compile time and it never returns: a compile that only its timeout ends, holding no
    // memory and writing no output (a C include bomb may end first by OOM or the file-size limit).
    const r = await run({
      language: 'd',
      files: [{ path: 'main.d', content: 'int f() { for (;;) {} }\nenum x = f();\nvoid main() {}\n' }],
      compileLimits: { wall_time_ms: 600 },
    });
    expect(r.verdict).toBe('compile_error');
    expect(r.compile).toMatchObject({ verdict: 'time_limit', exit_status: { code: null, signal: 'SIGKILL' } });
    expect(r.compile!.resource_usage.wall_time_ms).toBeGreaterThanOrEqual(590);
  }, 60_000);

  it('passes compiler options as words, never as shell code', async () => {
    const r = await run({ code: '#include <stdio.h>\nint main(){ printf("%d\\n", X); }', compilerOptions: '-DX=41+1 $(touch${IFS}/workspace/pwned)' });
    // `$(touch…)` reached gcc as a file name (an error), not the shell as a command.
    expect(r.compile!.verdict).toBe('compile_error');
    expect(r.compile!.stderr).toMatch(/\$\(touch/);
    const ok = await run({ code: '#include <stdio.h>\nint main(){ printf("%d\\n", X); }', compilerOptions: '-DX=41+1' });
    expect(ok.stdout.toString()).toBe('42\n');
  }, 60_000);

  it('reads a report that lies or is cut without trusting it', () => {
    expect(parseCompileReport(Buffer.from('garbage'), undefined)).toBeUndefined();
    const cut = parseCompileReport(Buffer.from('compile:failed 1 1000 999999999 5\n0m0.0s 0m0.0s\n0m0.5s 0m0.25s\nabc'), undefined)!;
    expect(cut).toMatchObject({ verdict: 'compile_error', stdout: 'abc', stderr: '', output_truncated: true, resource_usage: { cpu_time_ms: 750, wall_time_ms: 1 } });
  });
});
