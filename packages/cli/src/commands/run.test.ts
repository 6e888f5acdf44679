import type { Job } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import { truncationNote } from './run.js';

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
