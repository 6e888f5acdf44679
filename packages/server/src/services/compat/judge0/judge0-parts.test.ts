import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ADDITIONAL_FILES_LIMITS, unpackAdditionalFiles } from './additional-files.js';
import { callbackHostAllowed, checkCallbackUrl, isPublicAddress, sendCallback } from './callback.js';
import { judge0Language } from './languages.js';
import { judge0AnswerMatches, JUDGE0_STATUSES } from './statuses.js';
import { splitArguments } from './submission-request.js';
import { buildZip } from './zip-testing.js';

const zip64 = (...entries: Parameters<typeof buildZip>[0]) => buildZip(entries).toString('base64');

describe('Judge0 parts', () => {
  it('compares answers as Judge0 does: trailing whitespace of lines and trailing blank lines ignored', () => {
    expect(judge0AnswerMatches('42\n', '42')).toBe(true);
    expect(judge0AnswerMatches('a  \nb\t\n\n\n', 'a\nb')).toBe(true);
    expect(judge0AnswerMatches(' 42', '42')).toBe(false);
    expect(judge0AnswerMatches('a\n\nb', 'a\nb')).toBe(false);
    expect(judge0AnswerMatches('', '')).toBe(true);
    // Linear on hostile input: a long run of spaces that never ends in a newline.
    expect(judge0AnswerMatches(`${' '.repeat(200_000)}x`, 'x')).toBe(false);
  });

  it('has the fourteen statuses in order and Judge0 CE ids for the languages', () => {
    expect(JUDGE0_STATUSES.map((s) => s.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(JUDGE0_STATUSES[10]).toEqual({ id: 11, description: 'Runtime Error (NZEC)' });
    const kiln = (id: number) => judge0Language(id)?.kiln;
    expect([71, 63, 50, 54, 62, 60, 73, 74, 78, 51, 61, 65, 81, 59, 67, 56, 58, 57, 86, 88, 80, 69, 77, 45, 66, 46, 72, 68, 85, 64, 82, 47].map(kiln)).toEqual([
      'python', 'node', 'c', 'cpp', 'java', 'go', 'rust', 'typescript', 'kotlin', 'csharp', 'haskell', 'ocaml', 'scala', 'fortran',
      'pascal', 'd', 'erlang', 'elixir', 'clojure', 'groovy', 'r', 'prolog', 'cobol', 'nasm', 'octave', 'bash', 'ruby', 'php', 'perl', 'lua',
      'sqlite', 'basic',
    ]);
    expect(kiln(100)).toBe('python');
    expect(kiln(999)).toBeUndefined();
  });

  it('splits command_line_arguments into words without a shell', () => {
    expect(splitArguments(`a "b c" 'd e' $(rm -rf /) ;x`)).toEqual(['a', 'b c', 'd e', '$(rm', '-rf', '/)', ';x']);
    expect(splitArguments('  ')).toEqual([]);
    expect(() => splitArguments('"open')).toThrow(/unclosed/);
  });

  it('unpacks a zip into job files; refuses links, escapes, too many entries and bombs', async () => {
    const files = await unpackAdditionalFiles(zip64({ name: 'lib/', kind: 'dir' }, { name: 'lib/helper.py', content: 'X = 1\n' }));
    expect(files).toEqual([{ path: 'lib/helper.py', content: Buffer.from('X = 1\n').toString('base64'), encoding: 'base64' }]);
    await expect(unpackAdditionalFiles(zip64({ name: 'evil', kind: 'symlink', content: '/etc/passwd' }))).rejects.toThrow(/symbolic link/);
    await expect(unpackAdditionalFiles(zip64({ name: '../../escape.txt', content: 'x' }))).rejects.toThrow(/leaves the workspace|could not be unpacked/);
    await expect(unpackAdditionalFiles(zip64({ name: '/abs.txt', content: 'x' }))).rejects.toThrow(/leaves the workspace|could not be unpacked/);
    const many = Array.from({ length: ADDITIONAL_FILES_LIMITS.maxEntries + 1 }, (_, i) => ({ name: `f${i}`, content: '' }));
    await expect(unpackAdditionalFiles(zip64(...many))).rejects.toThrow(/entries/);
    // 5 MiB of zeros deflates to a few KiB: refused by its size before it is inflated.
    await expect(unpackAdditionalFiles(zip64({ name: 'bomb', content: Buffer.alloc(5 * 1024 * 1024) }))).rejects.toThrow(/more than/);
    // A header that lies (claims 10 bytes, inflates to 1 MiB): stopped while inflating.
    await expect(unpackAdditionalFiles(zip64({ name: 'liar', content: Buffer.alloc(1024 * 1024), declaredSize: 10 }))).rejects.toThrow(/could not be unpacked/);
    await expect(unpackAdditionalFiles(Buffer.from('not a zip').toString('base64'))).rejects.toThrow(/not a zip/);
  });

  it('allows callbacks only to the operator\'s hosts, and only to public addresses', async () => {
    expect(callbackHostAllowed('hooks.example.com', ['hooks.example.com'])).toBe(true);
    expect(callbackHostAllowed('a.example.org', ['*.example.org'])).toBe(true);
    expect(callbackHostAllowed('example.org', ['*.example.org'])).toBe(false);
    expect(callbackHostAllowed('evilexample.org', ['*.example.org'])).toBe(false);
    expect(() => checkCallbackUrl('http://other.example/cb', ['hooks.example.com'])).toThrow(/not one the operator allows/);
    expect(() => checkCallbackUrl('file:///etc/passwd', ['hooks.example.com'])).toThrow(/http or https/);
    expect(() => checkCallbackUrl('http://u:p@hooks.example.com/', ['hooks.example.com'])).toThrow(/credentials/);
    for (const a of ['127.0.0.1', '10.0.0.1', '192.168.1.1', '172.16.0.1', '169.254.169.254', '100.64.0.1', '::1', '::ffff:127.0.0.1', 'fd00::1', '0.0.0.0', '224.0.0.1']) {
      expect(isPublicAddress(a), a).toBe(false);
    }
    expect(isPublicAddress('93.184.216.34')).toBe(true);
    expect(isPublicAddress('2606:2800:220:1:248:1893:25c8:1946')).toBe(true);
    // A name that resolves to loopback is never connected to: the listener here must see nothing.
    let reached = 0;
    const server = createServer((_req, res) => {
      reached += 1;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      await expect(sendCallback(new URL(`http://localhost:${port}/cb`), { ok: 1 })).rejects.toThrow(/not public/);
      await expect(sendCallback(new URL(`http://127.0.0.1:${port}/cb`), { ok: 1 })).rejects.toThrow(/not public/);
      // DNS that answers a public and a private address: refused as a whole.
      const mixed = (async () => [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }]) as never;
      await expect(sendCallback(new URL(`http://rebind.example:${port}/cb`), {}, mixed)).rejects.toThrow(/not public/);
      expect(reached).toBe(0);
    } finally {
      server.close();
    }
  });
});
