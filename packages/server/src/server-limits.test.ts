import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defineRoute } from './api/route.js';
import { loadServerConfig } from './config.js';
import { startServer, type RunningServer } from './server.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function serve(env: Record<string, string>, extraRoutes = [] as ReturnType<typeof defineRoute>[]): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-limits-'));
  dirs.push(dir);
  return startServer(loadServerConfig({ KILN_DATA_DIR: dir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent', ...env }), { extraRoutes });
}

interface HeldSocket {
  socket: Socket;
  /** resolves when the server closed it, with what it answered (if anything) */
  closed: Promise<string>;
}

/** A connection that sends `prefix` of a request and then nothing (slowloris). */
function holdOpen(server: RunningServer, prefix: string, localAddress = '127.0.0.1'): Promise<HeldSocket> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), localAddress });
    let answered = '';
    socket.on('data', (chunk) => (answered += chunk.toString()));
    const closed = new Promise<string>((done) => socket.once('close', () => done(answered)));
    socket.once('error', () => {});
    socket.once('connect', () => {
      socket.write(prefix);
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

/** A plain GET from a given source address; answers the status, or the error's code. */
function get(server: RunningServer, path: string, localAddress = '127.0.0.1'): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(`${server.url}${path}`, { localAddress, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    req.end();
  });
}

/** Resolves with `promise`, or rejects after `ms`: a bound on the wait, not a timing assertion. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);
}

describe('HTTP limits of a listening server', () => {
  it('cuts 300 half-sent requests after the header timeout, serving others meanwhile', async () => {
    const slowAnswer = defineRoute({
      method: 'GET',
      url: '/test/slow-answer',
      summary: 'answers after longer than the request timeout, like a long poll',
      tag: 'test',
      auth: 'public',
      handler: async () => {
        await new Promise((r) => setTimeout(r, 1500));
        return { ok: true };
      },
    });
    const server = await serve(
      { KILN_HTTP_HEADERS_TIMEOUT_MS: '500', KILN_HTTP_REQUEST_TIMEOUT_MS: '1000', KILN_HTTP_MAX_CONNECTIONS_PER_SOURCE: '1000' },
      [slowAnswer],
    );
    try {
      // Half send part of their headers, half connect and send nothing at all.
      const held = await Promise.all(
        Array.from({ length: 300 }, (_, i) => holdOpen(server, i % 2 ? 'GET /healthz HTTP/1.1\r\nHost: kiln\r\nX-Slow: ' : '')),
      );
      // While they are held, the API answers.
      expect(await get(server, '/readyz')).toBe(200);
      // A body trickled a byte at a time is cut by the request timeout.
      const trickle = await holdOpen(server, 'POST /v1/tenants HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
      const drip = setInterval(() => trickle.socket.writable && trickle.socket.write(' '), 100);
      // A request that arrived whole may be answered after longer than the request timeout (long polls, SSE).
      const slow = get(server, '/test/slow-answer');

      const answers = await within(Promise.all(held.map((h) => h.closed)), 15_000, 'half-sent requests closed');
      expect(answers.every((a) => a === '' || a.startsWith('HTTP/1.1 408'))).toBe(true);
      expect(await within(trickle.closed, 15_000, 'trickled body cut')).toMatch(/^(HTTP\/1.1 408|)/);
      clearInterval(drip);
      expect(await slow).toBe(200);
      expect(await get(server, '/readyz')).toBe(200);
    } finally {
      await server.close();
    }
  }, 30_000);

  it('refuses connections over the per-source and total caps while the API still serves', async () => {
    const server = await serve({
      KILN_HTTP_HEADERS_TIMEOUT_MS: '20000',
      KILN_HTTP_MAX_CONNECTIONS_PER_SOURCE: '20',
      KILN_HTTP_MAX_CONNECTIONS: '30',
    });
    const held: HeldSocket[] = [];
    try {
      const partial = 'GET /healthz HTTP/1.1\r\nHost: kiln\r\n';
      for (let i = 0; i < 20; i++) held.push(await holdOpen(server, partial, '127.0.0.1'));
      // The 21st from the same source is closed at once, unanswered...
      const over = await holdOpen(server, partial, '127.0.0.1');
      expect(await within(over.closed, 5000, 'over the per-source cap')).toBe('');
      // ...while another source is served.
      expect(await get(server, '/readyz', '127.0.1.1')).toBe(200);

      for (let i = 0; i < 10; i++) held.push(await holdOpen(server, partial, '127.0.1.1'));
      // 30 open: the total cap refuses a third source too.
      const third = await get(server, '/readyz', '127.0.2.1');
      expect(third).not.toBe(200);
      // Once the holders go, everyone is served again.
      held.splice(0).forEach((h) => h.socket.destroy());
      let status: number | string = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        status = await get(server, '/readyz', '127.0.2.1');
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      expect(status).toBe(200);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/kiln_http_connections_refused_total\{reason="per_source"\} [1-9]/);
      expect(metrics).toMatch(/kiln_http_connections_refused_total\{reason="max_connections"\} [1-9]/);
    } finally {
      held.forEach((h) => h.socket.destroy());
      await server.close();
    }
  }, 30_000);
});
