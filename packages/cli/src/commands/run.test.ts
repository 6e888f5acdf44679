import type { Job } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import { buildRequest, gatherInputs, parseDuration, safeTarget, truncationNote } from './run.js';

describe('kiln run: truncated live output', () => {
  it('names the reasons and the artifacts that hold the whole output', () => {
    const job = { id: 'job_1', output_refs: { stdout: 'art_out', stderr: 'art_err', artifacts: [] } } as unknown as Job;
    const notice = { stream: null, dropped_bytes: null, live_output_continues: false, detail: '' };
    const note = truncationNote([{ ...notice, reason: 'slow_watcher' }, { ...notice, reason: 'slow_watcher' }, { ...notice, reason: 'runner_refused' }], job);
    expect(note).toMatch(/^\nkiln: live output truncated \(slow_watcher, runner_refused\); the full output is in stdout in artifact art_out, stderr in artifact art_err/);
  });

  it('points at the job when it has no output artifacts yet', () => {
    const job = { id: 'job_2', output_refs: null } as unknown as Job;
    expect(truncationNote([{ reason: 'not_buffered', stream: null, dropped_bytes: null, live_output_continues: true, detail: '' }], job)).toMatch(/the artifacts of job job_2/);
  });
});

describe('kiln run: inputs, durations and downloads', () => {
  it('sends a directory by the paths inside it and picks main.* as the entrypoint', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'kiln-run-inputs-'));
    try {
      mkdirSync(join(dir, 'app/pkg'), { recursive: true });
      mkdirSync(join(dir, 'app/node_modules'));
      writeFileSync(join(dir, 'app/main.py'), 'import lib');
      writeFileSync(join(dir, 'app/lib.py'), '');
      writeFileSync(join(dir, 'app/pkg/util.py'), '');
      writeFileSync(join(dir, 'app/node_modules/big.js'), '');
      writeFileSync(join(dir, 'app/blob.bin'), Buffer.from([0xff, 0xfe, 0x00]));
      const request = await buildRequest([join(dir, 'app')], ['x'], {});
      expect(request.entrypoint).toBe('main.py');
      expect(request.language).toBe('python');
      expect(request.args).toEqual(['x']);
      expect(request.files!.map((f) => f.path).sort()).toEqual(['blob.bin', 'lib.py', 'main.py', 'pkg/util.py']);
      expect(request.files!.find((f) => f.path === 'blob.bin')).toMatchObject({ encoding: 'base64', content: '//4A' });
      await expect(gatherInputs([join(dir, 'missing.py')])).rejects.toThrow(/cannot read .*missing\.py: no such file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads durations as a person writes them', () => {
    expect([parseDuration('30'), parseDuration('500ms'), parseDuration('2m')]).toEqual([30_000, 500, 120_000]);
    expect(() => parseDuration('soon')).toThrow(/expected a duration/);
  });

  it('--download never writes outside its folder, whatever an artifact is named', () => {
    expect(safeTarget('/tmp/dl', 'out/a.txt')).toBe('/tmp/dl/out/a.txt');
    for (const name of ['../escape', 'out/../../escape', '/etc/passwd', '..', '']) expect(safeTarget('/tmp/dl', name), name).toBeUndefined();
  });
});
