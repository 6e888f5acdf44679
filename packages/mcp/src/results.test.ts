import { KilnError } from '@kiln/core';
import { ConnectionError, errorFromProblem } from '@kiln/sdk';
import { describe, expect, it } from 'vitest';
import { asText, readAtMost } from './bounded-read.js';
import { capText, guarded, toolError } from './results.js';

const stream = (...chunks: Uint8Array[]) =>
  new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });

describe('tool results', () => {
  it('turns kiln\'s problems into isError results with the code, status and field', () => {
    const err = errorFromProblem(422, { code: 'POLICY_VIOLATION', detail: 'wall_time_ms over 30000', field: 'body.limits.wall_time_ms' }, null);
    const result = toolError(err);
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toEqual({ error: { code: 'POLICY_VIOLATION', status: 422, message: 'wall_time_ms over 30000', field: 'body.limits.wall_time_ms' } });
    expect(result.content[0]).toEqual({ type: 'text', text: 'POLICY_VIOLATION: wall_time_ms over 30000 (field: body.limits.wall_time_ms)' });
  });

  it('answers an unreachable control plane and a thrown bug as results too', async () => {
    expect((toolError(new ConnectionError('http://127.0.0.1:9', 'refused')).structuredContent as any).error.code).toBe('UNREACHABLE');
    expect((toolError(new KilnError('NOT_FOUND', 'no such job')).structuredContent as any).error).toMatchObject({ code: 'NOT_FOUND' });
    const result = await guarded(async () => {
      throw new TypeError('boom');
    });
    expect(result).toMatchObject({ isError: true, structuredContent: { error: { code: 'INTERNAL', message: 'boom' } } });
  });

  it('caps inline text and says so', () => {
    expect(capText('abc', 2)).toEqual({ text: 'ab', truncated: true });
    expect(capText(null)).toEqual({ text: '', truncated: false });
  });
});

describe('bounded reads', () => {
  it('reads no more than asked, and says the body was longer', async () => {
    const read = await readAtMost(stream(new Uint8Array(10).fill(1), new Uint8Array(10).fill(2)), 15);
    expect(read.truncated).toBe(true);
    expect([...read.bytes]).toEqual([...new Array(10).fill(1), ...new Array(5).fill(2)]);
    expect(await readAtMost(stream(new Uint8Array([7])), 15)).toEqual({ bytes: new Uint8Array([7]), truncated: false });
  });

  it('tells text from binary, and a character cut at the limit is not binary', () => {
    expect(asText(new TextEncoder().encode('héllo'), false)).toBe('héllo');
    expect(asText(new Uint8Array([0x68, 0x00]), false)).toBeNull();
    expect(asText(new Uint8Array([0xff, 0xfe]), false)).toBeNull();
    const cut = new TextEncoder().encode('aé').subarray(0, 2);
    expect(asText(cut, true)).toBe('a');
    expect(asText(cut, false)).toBeNull();
  });
});
