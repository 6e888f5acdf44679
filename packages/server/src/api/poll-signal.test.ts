import { EventEmitter, getEventListeners } from 'node:events';
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { pollSignal } from './route.js';

const requestLike = () => ({ raw: new EventEmitter() }) as unknown as FastifyRequest & { raw: EventEmitter };

describe('pollSignal', () => {
  it('aborts when the client goes away and leaves no listener on the shutdown signal', () => {
    const shutdown = new AbortController();
    const requests = Array.from({ length: 50 }, requestLike);
    const signals = requests.map((r) => pollSignal({ shutdown: shutdown.signal }, r));
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(50);
    for (const r of requests) r.raw.emit('close');
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
  });

  it('aborts every open poll at shutdown', () => {
    const shutdown = new AbortController();
    const signals = [requestLike(), requestLike()].map((r) => pollSignal({ shutdown: shutdown.signal }, r));
    expect(signals.some((s) => s.aborted)).toBe(false);
    shutdown.abort();
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(pollSignal({ shutdown: shutdown.signal }, requestLike()).aborted).toBe(true);
  });
});
