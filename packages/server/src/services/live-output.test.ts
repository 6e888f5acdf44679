import { describe, expect, it } from 'vitest';
import { LiveOutput, outputPieces } from './live-output.js';

describe('outputPieces', () => {
  it('cuts plain text at 2048 characters and escaped or wide text smaller, each fitting one NOTIFY', () => {
    for (const text of ['a'.repeat(10_000), '\u0001'.repeat(10_000), '"\\'.repeat(5000), 'é'.repeat(10_000), '😀'.repeat(5000)]) {
      const pieces = [...outputPieces(text)];
      expect(pieces.join('') === text).toBe(true);
      for (const p of pieces) expect(Buffer.byteLength(JSON.stringify(p))).toBeLessThanOrEqual(6000);
      // No piece starts with the low half of a surrogate pair.
      for (const p of pieces) expect(/^[\udc00-\udfff]/.test(p)).toBe(false);
    }
    expect([...outputPieces('a'.repeat(4096))].map((p) => p.length)).toEqual([2048, 2048]);
  });
});

describe('LiveOutput', () => {
  it('decodes a character split between two reports whole', () => {
    const live = new LiveOutput();
    const bytes = Buffer.from('añb');
    expect(live.decode('job_1', 'stdout', bytes.subarray(0, 2)) + live.decode('job_1', 'stdout', bytes.subarray(2))).toBe('añb');
  });

  it('keeps the first bytes of a job up to its bound, counts and warns once about the rest', () => {
    const warnings: string[] = [];
    const live = new LiveOutput({ maxBytesPerJob: 10, warn: (f) => warnings.push(f.reason) });
    live.append('job_1', 'stdout', '12345678');
    live.append('job_1', 'stdout', 'abcd');
    live.append('job_1', 'stdout', 'efgh');
    expect(live.since('job_1').map((c) => c.seq)).toEqual([1]);
    expect(live.lastSeq('job_1')).toBe(3);
    expect(live.droppedAny('job_1')).toBe(true);
    expect(live.lostBytesByReason().get('live_buffer_full')).toBe(8);
    expect(warnings).toEqual(['live_buffer_full']);
  });
});
