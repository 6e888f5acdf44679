import { describe, expect, it } from 'vitest';
import { parseEventStream } from './sse.js';

const streamOf = (parts: string[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const p of parts) controller.enqueue(new TextEncoder().encode(p));
      controller.close();
    },
  });

async function collect(parts: string[], max?: number) {
  const out = [];
  for await (const e of parseEventStream(streamOf(parts), max)) out.push(e);
  return out;
}

describe('parseEventStream', () => {
  it('parses events split anywhere, including the truncated notice', async () => {
    const events = await collect(['event: output\nda', 'ta: {"a":1}\n\n: keep-alive\n\nevent: truncated\ndata: {"reason":"slow_watcher"}\n\n']);
    expect(events).toEqual([
      { event: 'output', data: '{"a":1}' },
      { event: 'truncated', data: '{"reason":"slow_watcher"}' },
    ]);
  });

  it('refuses an event past its bound instead of holding it all', async () => {
    await expect(collect(['data: ' + 'x'.repeat(2000)], 1000)).rejects.toThrow(/over 1000 characters/);
    await expect(collect(['data: ' + 'x'.repeat(600) + '\n', 'data: ' + 'x'.repeat(600) + '\n'], 1000)).rejects.toThrow(/over 1000/);
  });
});
