import { describe, expect, it } from 'vitest';
import { KilnClient } from './client.js';
import { ConnectionError, networkReason } from './errors.js';

describe('SDK errors for a server that cannot be reached', () => {
  it('names the cause undici hides in `cause`, also behind an AggregateError', () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    expect(networkReason(refused)).toBe('connection refused');
    const both = Object.assign(new TypeError('fetch failed'), { cause: new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]) });
    expect(networkReason(both)).toBe('connection refused');
    expect(networkReason(Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('y'), { code: 'ENOTFOUND' }) }))).toBe('host not found');
    expect(networkReason(new TypeError('fetch failed'))).toBe('network error');
  });

  it('a refused connection is a ConnectionError naming the URL, not a bare TypeError', async () => {
    const err = await new KilnClient({ url: 'http://127.0.0.1:1/', apiKey: 'k' }).jobs.get('job_x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).url).toBe('http://127.0.0.1:1');
    expect((err as Error).message).toMatch(/^cannot reach http:\/\/127\.0\.0\.1:1 \(/);
  });
});
