import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LinePrefixer, loadWorkflowFile } from './workflow.js';

describe('kiln workflow files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-wf-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads YAML and JSON, with code_file and files read from beside the workflow file', async () => {
    writeFileSync(join(dir, 'make.py'), 'print("hi")\n');
    writeFileSync(join(dir, 'blob.bin'), Buffer.from([0xff, 0x00, 0xfe]));
    writeFileSync(
      join(dir, 'flow.yaml'),
      'name: demo\nsteps:\n  - name: make\n    language: python\n    code_file: make.py\n    files:\n      - { path: data.bin, file: blob.bin }\n',
    );
    const request = await loadWorkflowFile(join(dir, 'flow.yaml'));
    expect(request).toEqual({
      name: 'demo',
      steps: [{ name: 'make', language: 'python', code: 'print("hi")\n', files: [{ path: 'data.bin', content: '/wD+', encoding: 'base64' }] }],
    });
    writeFileSync(join(dir, 'flow.json'), JSON.stringify({ steps: [{ name: 'a', language: 'bash', code: 'echo 1' }] }));
    expect((await loadWorkflowFile(join(dir, 'flow.json'))).steps[0]).toMatchObject({ name: 'a', code: 'echo 1' });
  });

  it('refuses a file without steps, and names a referenced file that is missing', async () => {
    writeFileSync(join(dir, 'empty.yaml'), 'name: nothing\n');
    await expect(loadWorkflowFile(join(dir, 'empty.yaml'))).rejects.toThrow(/needs "steps"/);
    writeFileSync(join(dir, 'missing.yaml'), 'steps:\n  - { name: a, language: python, code_file: nope.py }\n');
    await expect(loadWorkflowFile(join(dir, 'missing.yaml'))).rejects.toThrow(/nope\.py/);
  });

  it('bounds YAML alias expansion (a billion-laughs file is refused, not expanded)', async () => {
    const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) laughs.push(`${'abcdefghi'[i]}: &${'abcdefghi'[i]} [${Array(9).fill(`*${'abcdefghi'[i - 1]}`).join(',')}]`);
    writeFileSync(join(dir, 'laughs.yaml'), `${laughs.join('\n')}\nsteps: [*i]\n`);
    await expect(loadWorkflowFile(join(dir, 'laughs.yaml'))).rejects.toThrow();
  });

  it("prefixes each line of a step's output with its name, across chunks", () => {
    const p = new LinePrefixer();
    expect(p.add({ step: 'make', stream: 'stdout', data: 'one\ntw' })).toBe('[make] one\n[make] tw');
    expect(p.add({ step: 'make', stream: 'stdout', data: 'o\nthree\n' })).toBe('o\n[make] three\n');
  });
});
