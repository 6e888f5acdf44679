import { readFileSync } from 'node:fs';
import { DEFAULT_LANGUAGES, KilnError, type Limits } from '@kiln/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { canonicalLanguage, findLanguage, LANGUAGES, languageVariants, NODE_LIBRARIES, type LanguageDefinition } from './catalog/index.js';
import { advertisedLanguages, detectLanguages } from './detect.js';
import { CRASHING_SAMPLES, SAMPLE_OUTPUT, SAMPLE_STDIN, SAMPLES, type LanguageSample } from './samples.js';
import { buildOneShotSpec } from './spec.js';
import { limiter } from './test-limiter.js';

const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

/** Enough for every catalog language: the JVM compilers want the most (see each entry's `needs`). */
const LIMITS: Limits = {
  cpu_time_ms: 60_000,
  wall_time_ms: 90_000,
  memory_bytes: 1024 * 1024 * 1024,
  pids: 128,
  output_bytes: 64 * 1024,
  file_size_bytes: 16 * 1024 * 1024,
  disk_bytes: 128 * 1024 * 1024,
};

/**
 * The toolchains under test: the whole catalog, or the languages KILN_LANGUAGES names when the set-up
 * installed a smaller set. Two sandboxes at a time: this is a 2-core machine and compilers are heavy.
 */
const selected = (process.env.KILN_LANGUAGES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
const selection = selected.length > 0 ? new Set(selected) : undefined;
const UNDER_TEST = LANGUAGES.filter((l) => !selection || selection.has(l.name) || l.aliases.some((a) => selection.has(a)));
const slots = limiter(2);
const label = (l: LanguageDefinition) => `${l.name}${l.runtime ? ` (${l.runtime}: ${l.versionCommand[0]})` : ''}`;

const run = (toolchain: LanguageDefinition, code: string, args: string[], stdin = '') =>
  slots(() => driver.run(buildOneShotSpec({ language: toolchain.name, code, args, stdin }, LIMITS, {}, toolchain)));

describe('language catalog', () => {
  it('offers at least forty languages, each detected with its version, aliases and libraries inside a sandbox', async () => {
    const detected = await detectLanguages(driver, { fresh: true });
    const names = new Set(detected.map((d) => d.name));
    if (!selection) expect(names.size).toBeGreaterThanOrEqual(40);
    for (const d of detected) expect(d.version).toMatch(/^\d+(\.\d+)+$/);
    expect([...names]).toEqual(expect.arrayContaining(['python', 'node', 'bash', 'sh', 'c', 'cpp', 'java']));
    // Versions side by side: one offer per toolchain, the language's default first.
    if (!selection) {
      const c = detected.filter((d) => d.name === 'c');
      expect(c.map((d) => d.runtime)).toEqual(['gcc', 'gcc', 'clang', 'clang', 'clang']);
      expect(new Set(c.map((d) => d.version)).size).toBe(5);
      expect(detected.filter((d) => d.name === 'lua').map((d) => d.version.slice(0, 3))).toEqual(['5.4', '5.3', '5.1']);
    }
    const python = detected.find((d) => d.name === 'python');
    expect(python?.aliases).toEqual(expect.arrayContaining(['py', 'python3']));
    expect(python?.libraries).toEqual(expect.arrayContaining(['numpy', 'pandas', 'matplotlib', 'scikit-learn']));
    // What goes on the wire is the protocol's shape, without the catalog's functions.
    expect(advertisedLanguages(detected).every((l) => !('definition' in l))).toBe(true);
    // Cached: the same answer without new sandboxes, in this process and from disk in the next one.
    expect(await detectLanguages(driver)).toBe(await detectLanguages(driver));
    const other = new BubblewrapDriver();
    const fromDisk = await detectLanguages(other);
    expect(advertisedLanguages(fromDisk)).toEqual(advertisedLanguages(detected));
    expect(fromDisk.map((d) => d.definition)).toEqual(detected.map((d) => d.definition));
    await other.drain();
  }, 120_000);

  it('has sample programs for every catalog language, and every alias names one language', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual([...new Set(LANGUAGES.map((l) => l.name))].sort());
    // The default policy allows the whole catalog, and the set-up installs it (KILN_LANGUAGES keys).
    expect([...DEFAULT_LANGUAGES].sort()).toEqual(Object.keys(SAMPLES).sort());
    const setup = readFileSync(new URL('../../../../scripts/setup.sh', import.meta.url), 'utf8');
    const installed = [...setup.matchAll(/\[([a-z]+)\]="/g)].map((m) => m[1]);
    expect(installed.sort()).toEqual(Object.keys(SAMPLES).sort());
    for (const l of LANGUAGES) {
      if (l.compiled) expect(SAMPLES[l.name]?.broken, l.name).toBeDefined();
      for (const a of l.aliases) expect(canonicalLanguage(a), a).toBe(l.name);
    }
    expect(findLanguage('py')?.name).toBe('python');
    expect(findLanguage('c++')?.name).toBe('cpp');
    expect(findLanguage('ts')?.name).toBe('typescript');
    expect(findLanguage('cs')?.name).toBe('csharp');
    expect(findLanguage('js')?.name).toBe('node');
    expect(languageVariants('c').map((l) => l.versionCommand[0])).toEqual(['gcc', 'gcc-11', 'clang-16', 'clang-15', 'clang-14']);
  });

  for (const toolchain of UNDER_TEST) {
    const sample = SAMPLES[toolchain.name] as LanguageSample;
    describe.concurrent(label(toolchain), () => {
      it('runs hello world and passes stdin to stdout', async () => {
        const ok = await run(toolchain, sample.hello, sample.exit ? [] : ['0'], sample.stdin ?? SAMPLE_STDIN);
        expect({ verdict: ok.verdict, stdout: ok.stdout.toString(), exit: ok.exit_status }).toEqual({
          verdict: 'ok',
          stdout: sample.expected ?? SAMPLE_OUTPUT,
          exit: { code: 0, signal: null },
        });
      }, 180_000);

      // bc has no exit status of its own (it ends 0 even after its own errors): its errors go to stderr.
      if (toolchain.name === 'bc') {
        it('reports its errors on stderr', async () => {
          const r = await run(toolchain, 'x = 1 / 0\nhalt\n', []);
          expect(r.stderr.toString()).toMatch(/Divide by zero/);
        }, 180_000);
      } else {
        it('reports its exit code', async () => {
          const three = await run(toolchain, sample.exit ?? sample.hello, sample.exit ? [] : ['3'], 'x\n');
          expect({ verdict: three.verdict, exit: three.exit_status }).toEqual({ verdict: 'runtime_error', exit: { code: 3, signal: null } });
        }, 180_000);
      }

      if ((CRASHING_SAMPLES as readonly string[]).includes(toolchain.name)) {
        it('reports a runtime error as runtime_error with the error on stderr', async () => {
          const r = await run(toolchain, sample.hello, ['crash'], 'x\n');
          expect(r.verdict).toBe('runtime_error');
          expect(r.exit_status.code === 0).toBe(false);
          expect(r.stdout.toString()).toContain('hello, world');
          if (toolchain.name !== 'c') expect(r.stderr.length).toBeGreaterThan(0);
          else expect(r.exit_status.signal).toBe('SIGSEGV');
        }, 180_000);
      }

      if (sample.broken) {
        it('reports a compile failure as compile_error with the compiler message', async () => {
          const r = await run(toolchain, sample.broken as string, []);
          expect(r.verdict).toBe('compile_error');
          expect(r.stderr.length + r.stdout.length).toBeGreaterThan(0);
        }, 180_000);
      }
    });
  }

  it('the default Python imports its libraries and plots a PNG into out/', async () => {
    const python = findLanguage('python') as LanguageDefinition;
    const r = await slots(() =>
      driver.run(
        buildOneShotSpec(
          {
            language: 'python',
            code: `import numpy, pandas, scipy, sklearn, sympy, requests, PIL, yaml
import matplotlib.pyplot as plt
import os
os.makedirs("out", exist_ok=True)
frame = pandas.DataFrame({"x": numpy.arange(10), "y": numpy.arange(10) ** 2})
plt.plot(frame.x, frame.y)
plt.savefig("out/chart.png")
print(plt.get_backend(), sympy.sqrt(8), yaml.safe_dump({"a": 1}).strip())
`,
          },
          LIMITS,
          { collect: ['out/**'] },
          python,
        ),
      ),
    );
    expect({ verdict: r.verdict, stderr: r.stderr.toString() }).toEqual({ verdict: 'ok', stderr: '' });
    expect(r.stdout.toString()).toBe('agg 2*sqrt(2) a: 1\n');
    const chart = r.files.find((f) => f.path === 'out/chart.png');
    expect(chart?.content.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // Matplotlib's cache stayed out of the workspace.
    expect(r.files.map((f) => f.path)).toEqual(['out/chart.png']);
  }, 120_000);

  it('Node requires its libraries, TypeScript among them', async () => {
    const node = findLanguage('node') as LanguageDefinition;
    const code = `${NODE_LIBRARIES.map((name) => `require(${JSON.stringify(name)});`).join('\n')}
const ts = require('typescript');
console.log(ts.transpile('let x: number = 1;').trim(), require('lodash').chunk([1, 2, 3], 2).length, require('semver').satisfies('1.2.3', '^1'));
`;
    const r = await run(node, code, []);
    expect({ verdict: r.verdict, stdout: r.stdout.toString(), stderr: r.stderr.toString() }).toEqual({
      verdict: 'ok',
      stdout: 'var x = 1; 2 true\n',
      stderr: '',
    });
  }, 120_000);

  it('runs entrypoints in folders and with odd names: a file name is never script text', async () => {
    const java = await slots(() =>
      driver.run(
        buildOneShotSpec(
          { language: 'java', files: [{ path: 'src/Hello.java', content: 'public class Hello { public static void main(String[] a) { System.out.println("hi " + a[0]); } }' }], args: ['there'] },
          LIMITS,
        ),
      ),
    );
    expect({ verdict: java.verdict, stdout: java.stdout.toString() }).toEqual({ verdict: 'ok', stdout: 'hi there\n' });
    const ts = await slots(() =>
      driver.run(
        buildOneShotSpec({ language: 'ts', files: [{ path: 'lib/x$(echo pwned).ts', content: 'const n: number = 6 * 7;\nconsole.log(n);\n' }] }, LIMITS),
      ),
    );
    expect({ verdict: ts.verdict, stdout: ts.stdout.toString(), stderr: ts.stderr.toString() }).toEqual({ verdict: 'ok', stdout: '42\n', stderr: '' });
  }, 120_000);

  it('a program cannot fake a compile error: fd 3 is closed before it runs', async () => {
    const r = await run(findLanguage('c') as LanguageDefinition, '#include <unistd.h>\nint main(){ return write(3, "compile:failed\\n", 15) < 0 ? 0 : 9; }\n', []);
    expect(r.verdict).toBe('ok');
  }, 60_000);
});

describe('buildOneShotSpec', () => {
  it('refuses unknown languages and empty requests with clear errors', () => {
    expect(() => buildOneShotSpec({ language: 'brainfuck', code: 'x' }, LIMITS)).toThrow(KilnError);
    expect(() => buildOneShotSpec({ language: 'brainfuck', code: 'x' }, LIMITS)).toThrow(/unknown language "brainfuck"/);
    expect(() => buildOneShotSpec({ language: 'python' }, LIMITS)).toThrow(/code or at least one file/);
    expect(() =>
      buildOneShotSpec({ language: 'python', files: [{ path: '../x.py', content: '' }] }, LIMITS),
    ).toThrow(/not allowed/);
    expect(() =>
      buildOneShotSpec({ language: 'python', files: [{ path: 'a.py', content: '' }], entrypoint: 'b.py' }, LIMITS),
    ).toThrow(/not among the files/);
  });

  it('makes Python stream its output (PYTHONUNBUFFERED=1) and plot headless unless the job says otherwise', () => {
    const plot = { MPLBACKEND: 'Agg', MPLCONFIGDIR: '/tmp/.matplotlib' };
    expect(buildOneShotSpec({ language: 'python', code: 'print(1)' }, LIMITS).env).toEqual({ PYTHONUNBUFFERED: '1', ...plot });
    const own = buildOneShotSpec({ language: 'python', code: 'print(1)', env: { PYTHONUNBUFFERED: '', A: 'b' } }, LIMITS);
    expect(own.env).toEqual({ ...plot, PYTHONUNBUFFERED: '', A: 'b' });
    // An alias is the language itself.
    expect(buildOneShotSpec({ language: 'py', code: 'print(1)' }, LIMITS).command).toEqual(['python3', '-B', 'main.py']);
    expect(buildOneShotSpec({ language: 'bash', code: 'echo 1' }, LIMITS).env).toBeUndefined();
  });

  it('picks the entrypoint among files and decodes base64 content', async () => {
    const spec = buildOneShotSpec(
      {
        language: 'python',
        files: [
          { path: 'lib/helper.py', content: Buffer.from('GREETING = "from a module"\n').toString('base64'), encoding: 'base64' },
          { path: 'app.py', content: 'import sys; sys.path.insert(0, "lib"); import helper; print(helper.GREETING)\n' },
        ],
      },
      LIMITS,
    );
    expect(spec.command).toEqual(['python3', '-B', 'app.py']);
    const r = await driver.run(spec);
    expect(r.stdout.toString()).toBe('from a module\n');
  });

  it('runs code with files beside it (a workflow step and its inputs), the code as the entrypoint', async () => {
    const spec = buildOneShotSpec(
      { language: 'python', code: 'print(open("data.csv").read().strip())\n', files: [{ path: 'data.csv', content: Buffer.from('a,b').toString('base64'), encoding: 'base64' }] },
      LIMITS,
    );
    expect(spec.command).toEqual(['python3', '-B', 'main.py']);
    expect((await driver.run(spec)).stdout.toString()).toBe('a,b\n');
    expect(() =>
      buildOneShotSpec({ language: 'python', code: 'print(1)', files: [{ path: '../escape', content: '' }] }, LIMITS),
    ).toThrow(/not allowed/);
  });
});
