import { KilnError, type Limits } from '@kiln/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { LANGUAGES } from './catalog.js';
import { detectLanguages } from './detect.js';
import { buildOneShotSpec } from './spec.js';

const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

const LIMITS: Limits = {
  cpu_time_ms: 20_000,
  wall_time_ms: 30_000,
  memory_bytes: 384 * 1024 * 1024,
  pids: 64,
  output_bytes: 64 * 1024,
  file_size_bytes: 16 * 1024 * 1024,
  disk_bytes: 64 * 1024 * 1024,
};

/**
 * One program per language: prints a greeting, echoes its first stdin line, then exits with the code in
 * argv[1], or fails at run time when argv[1] is `crash`.
 */
const PROGRAMS: Record<string, string> = {
  python: `import sys
print("hello, world")
line = sys.stdin.readline().strip()
print("got: " + line)
if sys.argv[1] == "crash":
    print(1 // 0)
sys.exit(int(sys.argv[1]))
`,
  node: `const fs = require('fs');
console.log('hello, world');
const line = fs.readFileSync(0, 'utf8').split('\\n')[0];
console.log('got: ' + line);
if (process.argv[2] === 'crash') null.boom();
process.exitCode = Number(process.argv[2]);
`,
  bash: `echo "hello, world"
read -r line
echo "got: $line"
if [[ "$1" == crash ]]; then set -u; echo "$undefined_variable"; fi
exit "$1"
`,
  sh: `echo "hello, world"
read -r line
echo "got: $line"
if [ "$1" = crash ]; then set -u; echo "$undefined_variable"; fi
exit "$1"
`,
  c: `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
  char line[256] = "";
  printf("hello, world\\n");
  if (fgets(line, sizeof line, stdin)) line[strcspn(line, "\\n")] = 0;
  printf("got: %s\\n", line);
  fflush(stdout);
  if (argc > 1 && strcmp(argv[1], "crash") == 0) { volatile int *p = NULL; *p = 1; }
  return argc > 1 ? atoi(argv[1]) : 0;
}
`,
  cpp: `#include <iostream>
#include <stdexcept>
#include <string>
int main(int argc, char **argv) {
  std::string line;
  std::cout << "hello, world" << std::endl;
  std::getline(std::cin, line);
  std::cout << "got: " << line << std::endl;
  if (std::string(argv[1]) == "crash") throw std::runtime_error("boom");
  return std::stoi(argv[1]);
}
`,
  java: `import java.io.*;
public class Main {
  public static void main(String[] args) throws IOException {
    System.out.println("hello, world");
    String line = new BufferedReader(new InputStreamReader(System.in)).readLine();
    System.out.println("got: " + (line == null ? "" : line));
    if (args[0].equals("crash")) throw new IllegalStateException("boom");
    System.exit(Integer.parseInt(args[0]));
  }
}
`,
  perl: `print "hello, world\\n";
my $l = <STDIN>; chomp $l;
print "got: $l\\n";
die "boom\\n" if $ARGV[0] eq "crash";
exit $ARGV[0];
`,
  tcl: `puts "hello, world"
gets stdin line
puts "got: $line"
if {[lindex $argv 0] eq "crash"} { error boom }
exit [lindex $argv 0]
`,
  ruby: `puts "hello, world"
l = $stdin.gets.to_s.chomp
puts "got: #{l}"
raise "boom" if ARGV[0] == "crash"
exit ARGV[0].to_i
`,
  php: `<?php
echo "hello, world\\n";
$l = trim((string) fgets(STDIN));
echo "got: $l\\n";
if ($argv[1] === "crash") { throw new Exception("boom"); }
exit((int) $argv[1]);
`,
  lua: `print("hello, world")
local l = io.read("l") or ""
print("got: " .. l)
if arg[1] == "crash" then error("boom") end
os.exit(tonumber(arg[1]))
`,
};

const BROKEN: Record<string, string> = {
  c: 'int main( { return 0; }\n',
  cpp: 'int main() { undefined_function(); }\n',
  java: 'public class Main { void broken( }\n',
};

const run = (language: string, code: string, args: string[], stdin = '') =>
  driver.run(buildOneShotSpec({ language, code, args, stdin }, LIMITS));

describe('language catalog', () => {
  it('offers at least ten languages, each detected with its version inside a sandbox', async () => {
    const detected = await detectLanguages(driver);
    expect(detected.length).toBeGreaterThanOrEqual(10);
    for (const d of detected) expect(d.version).toMatch(/^\d+(\.\d+)+$/);
    expect(detected.map((d) => d.name)).toEqual(expect.arrayContaining(['python', 'node', 'bash', 'sh', 'c', 'cpp', 'java']));
    // Cached: the same answer without new sandboxes.
    expect(await detectLanguages(driver)).toBe(await detectLanguages(driver));
  }, 60_000);

  it('has a test program for every catalog language', () => {
    expect(Object.keys(PROGRAMS).sort()).toEqual(LANGUAGES.map((l) => l.name).sort());
  });

  for (const language of LANGUAGES.map((l) => l.name)) {
    describe(language, () => {
      it('runs hello world, passes stdin to stdout, and reports its exit code', async () => {
        const ok = await run(language, PROGRAMS[language] as string, ['0'], 'ping from stdin\n');
        expect({ verdict: ok.verdict, stderr: ok.stderr.toString() }).toEqual({ verdict: 'ok', stderr: '' });
        expect(ok.stdout.toString()).toBe('hello, world\ngot: ping from stdin\n');
        expect(ok.exit_status).toEqual({ code: 0, signal: null });

        const three = await run(language, PROGRAMS[language] as string, ['3'], 'x\n');
        expect(three.verdict).toBe('runtime_error');
        expect(three.exit_status).toEqual({ code: 3, signal: null });
      }, 60_000);

      it('reports a runtime error as runtime_error with the error on stderr', async () => {
        const r = await run(language, PROGRAMS[language] as string, ['crash'], 'x\n');
        expect(r.verdict).toBe('runtime_error');
        expect(r.exit_status.code === 0).toBe(false);
        expect(r.stdout.toString()).toContain('hello, world');
        if (language !== 'c') expect(r.stderr.length).toBeGreaterThan(0);
        else expect(r.exit_status.signal).toBe('SIGSEGV');
      }, 60_000);

      if (BROKEN[language]) {
        it('reports a compile failure as compile_error with the compiler message', async () => {
          const r = await run(language, BROKEN[language] as string, ['0']);
          expect(r.verdict).toBe('compile_error');
          expect(r.stderr.toString()).toMatch(/error/);
        }, 60_000);
      }
    });
  }

  it('a program cannot fake a compile error: fd 3 is closed before it runs', async () => {
    const r = await run('c', '#include <unistd.h>\nint main(){ return write(3, "compile:failed\\n", 15) < 0 ? 0 : 9; }\n', []);
    expect(r.verdict).toBe('ok');
  }, 60_000);
});

describe('buildOneShotSpec', () => {
  it('refuses unknown languages and empty requests with clear errors', () => {
    expect(() => buildOneShotSpec({ language: 'cobol', code: 'x' }, LIMITS)).toThrow(KilnError);
    expect(() => buildOneShotSpec({ language: 'cobol', code: 'x' }, LIMITS)).toThrow(/unknown language "cobol"/);
    expect(() => buildOneShotSpec({ language: 'python' }, LIMITS)).toThrow(/code or at least one file/);
    expect(() =>
      buildOneShotSpec({ language: 'python', files: [{ path: '../x.py', content: '' }] }, LIMITS),
    ).toThrow(/not allowed/);
    expect(() =>
      buildOneShotSpec({ language: 'python', files: [{ path: 'a.py', content: '' }], entrypoint: 'b.py' }, LIMITS),
    ).toThrow(/not among the files/);
  });

  it('makes Python stream its output (PYTHONUNBUFFERED=1) unless the job says otherwise', () => {
    expect(buildOneShotSpec({ language: 'python', code: 'print(1)' }, LIMITS).env).toEqual({ PYTHONUNBUFFERED: '1' });
    const own = buildOneShotSpec({ language: 'python', code: 'print(1)', env: { PYTHONUNBUFFERED: '', A: 'b' } }, LIMITS);
    expect(own.env).toEqual({ PYTHONUNBUFFERED: '', A: 'b' });
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
