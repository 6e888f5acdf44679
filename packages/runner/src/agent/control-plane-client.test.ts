import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlPlaneClient, ControlPlaneError, type CredentialKeeper } from './control-plane-client.js';
import type { KeepAliveHttpOptions } from './keep-alive-http.js';

/** A request as the server received it, body whole. */
interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  socket: Socket;
}

type Handler = (req: Received, res: http.ServerResponse) => void;

/** A real HTTP server on loopback that records what arrives and answers as the test says. */
async function startServer() {
  const received: Received[] = [];
  const sockets: Socket[] = [];
  let handler: Handler = (_req, res) => res.end();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks), socket: req.socket };
      received.push(entry);
      handler(entry, res);
    });
  });
  server.on('connection', (socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    received,
    sockets,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answer: (next: Handler) => void (handler = next),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json = (res: http.ServerResponse, status: number, body: unknown, type = 'application/json') => {
  res.writeHead(status, { 'content-type': type });
  res.end(JSON.stringify(body));
};

const closed = (socket: Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

const heartbeat = { runner_id: 'run_1', leases: [], sandboxes: [] };
const heartbeatAnswer = { draining: false, stop: [] };

describe('ControlPlaneClient over node:http', () => {
  let plane: Awaited<ReturnType<typeof startServer>>;
  let client: ControlPlaneClient;
  const connect = (options: { keeper?: CredentialKeeper; connections?: KeepAliveHttpOptions; url?: string } = {}) => {
    client?.close();
    client = new ControlPlaneClient(options.url ?? plane.url, 'join_tok', options.keeper, options.connections);
    return client;
  };

  beforeEach(async () => {
    plane = await startServer();
    connect({ keeper: { load: () => 'cred_1', save: () => {} } });
  });
  afterEach(async () => {
    client.close();
    await plane.close();
  });

  it('sends JSON with the credential as a bearer token, and parses the JSON answer', async () => {
    plane.answer((_req, res) => json(res, 200, heartbeatAnswer));
    await expect(client.heartbeat(heartbeat)).resolves.toEqual(heartbeatAnswer);
    const [req] = plane.received;
    expect(req).toMatchObject({ method: 'POST', url: '/v1/runner/heartbeat' });
    expect(req!.headers).toMatchObject({ authorization: 'Bearer cred_1', 'content-type': 'application/json' });
    expect(JSON.parse(req!.body.toString())).toEqual(heartbeat);
  });

  it('keeps the base URL\'s own path, without its trailing slash', async () => {
    connect({ url: `${plane.url}/plane/` });
    plane.answer((_req, res) => res.writeHead(204).end());
    await expect(client.sendEvents('job 1', 2, [])).resolves.toBeUndefined();
    expect(plane.received[0]!.url).toBe('/plane/v1/runner/leases/job%201/events');
    expect(JSON.parse(plane.received[0]!.body.toString())).toEqual({ attempt: 2, events: [] });
  });

  it('uploads a blob as its raw bytes, application/octet-stream', async () => {
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
    plane.answer((_req, res) => json(res, 201, { checksum: 'sha256:x', size_bytes: bytes.length }));
    await expect(client.uploadBlob('job_1', 3, bytes)).resolves.toEqual({ checksum: 'sha256:x', size_bytes: bytes.length });
    const [req] = plane.received;
    expect(req).toMatchObject({ method: 'PUT', url: '/v1/runner/leases/job_1/blobs?attempt=3' });
    expect(req!.headers['content-type']).toBe('application/octet-stream');
    expect(req!.headers['content-length']).toBe(String(bytes.length));
    expect(req!.body.equals(bytes), 'the same bytes').toBe(true);
  });

  it('turns a problem+json refusal into a ControlPlaneError with its code and detail', async () => {
    plane.answer((_req, res) => json(res, 409, { code: 'STALE_ATTEMPT', detail: 'attempt 2 is not the current one' }, 'application/problem+json'));
    const err = await client.complete('job_1', {} as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneError);
    expect(err).toMatchObject({ status: 409, code: 'STALE_ATTEMPT', permanent: true });
    expect((err as Error).message).toBe('POST /v1/runner/leases/job_1/complete: STALE_ATTEMPT: attempt 2 is not the current one');

    plane.answer((_req, res) => json(res, 503, { code: 'UNAVAILABLE', detail: 'try later' }, 'application/problem+json'));
    await expect(client.complete('job_1', {} as never)).rejects.toMatchObject({ status: 503, code: 'UNAVAILABLE', permanent: false });
  });

  it('keeps the first 300 characters of an answer that is not JSON', async () => {
    const text = 'bad gateway '.repeat(50);
    plane.answer((_req, res) => res.writeHead(502, { 'content-type': 'text/plain' }).end(text));
    const err = (await client.heartbeat(heartbeat).catch((e: unknown) => e)) as ControlPlaneError;
    expect(err).toBeInstanceOf(ControlPlaneError);
    expect(err).toMatchObject({ status: 502, code: 'HTTP_502', permanent: false });
    expect(err.message).toBe(`POST /v1/runner/heartbeat: HTTP_502: ${text.slice(0, 300)}`);
  });

  it('gives up a request past its timeout with a TimeoutError, and closes its connection', async () => {
    plane.answer(() => {}); // never answers
    const err = (await client.heartbeat(heartbeat, { timeoutMs: 50 }).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe('TimeoutError');
    expect(err.message).toMatch(/^POST \/v1\/runner\/heartbeat: /);
    await closed(plane.received[0]!.socket);
  });

  it('gives up a lease poll when its signal aborts, with the signal\'s reason, and closes its connection', async () => {
    plane.answer(() => {}); // a long poll that never ends
    const controller = new AbortController();
    const polling = client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 20_000 }, controller.signal).catch((e: unknown) => e);
    while (plane.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    const err = (await polling) as Error;
    expect(err.name).toBe('AbortError');
    expect(err).toBe(controller.signal.reason);
    await closed(plane.received[0]!.socket);

    // An already aborted signal sends nothing.
    const reason = new Error('stopping');
    await expect(client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 0 }, AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(plane.received).toHaveLength(1);
  });

  it('refuses an answer over its bound, declared or streamed', async () => {
    connect({ connections: { maxResponseBytes: 1024 } });
    const big = JSON.stringify({ leases: [{ file: 'x'.repeat(2000) }] });
    plane.answer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-length': big.length }).end(big));
    await expect(client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 0 })).rejects.toThrow('POST /v1/runner/lease: the answer is over 1024 bytes');
    // Chunked: no length announced, counted as it arrives.
    plane.answer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(big.slice(0, 1000));
      setTimeout(() => res.end(big.slice(1000)), 10);
    });
    await expect(client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 0 })).rejects.toThrow('POST /v1/runner/lease: the answer is over 1024 bytes');
    // Within the bound, it is read.
    plane.answer((_req, res) => json(res, 200, { leases: [] }));
    await expect(client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 0 })).resolves.toEqual({ leases: [] });
  });

  it('sends 20 requests in a row over one kept-alive connection', async () => {
    plane.answer((_req, res) => json(res, 200, heartbeatAnswer));
    for (let i = 0; i < 20; i++) await client.heartbeat(heartbeat);
    expect(plane.received).toHaveLength(20);
    expect(plane.sockets).toHaveLength(1);
  });

  it('closes a connection idle past its timeout, but not one waiting on a long poll', async () => {
    connect({ connections: { idleSocketMs: 30 } });
    plane.answer((_req, res) => void setTimeout(() => json(res, 200, { leases: [] }), 150));
    await expect(client.lease({ runner_id: 'run_1', free_slots: 1, wait_ms: 0 })).resolves.toEqual({ leases: [] });
    expect(plane.sockets).toHaveLength(1);
    await closed(plane.sockets[0]!); // idle now: the client lets it go
    plane.answer((_req, res) => json(res, 200, heartbeatAnswer));
    await expect(client.heartbeat(heartbeat)).resolves.toEqual(heartbeatAnswer);
    expect(plane.sockets).toHaveLength(2);
  });

  it('opens a new connection when the server closed the idle one', async () => {
    plane.answer((_req, res) => json(res, 200, heartbeatAnswer));
    await client.heartbeat(heartbeat);
    plane.server.closeIdleConnections();
    await expect(client.heartbeat(heartbeat)).resolves.toEqual(heartbeatAnswer);
    expect(plane.sockets).toHaveLength(2);
  });

  it('sends once more, on a new connection, a request whose kept-alive connection the server dropped unanswered', async () => {
    const requestsOn = new Map<Socket, number>();
    plane.answer((req, res) => {
      const n = (requestsOn.get(req.socket) ?? 0) + 1;
      requestsOn.set(req.socket, n);
      // The race a keep-alive timeout loses: the server drops the connection as a request arrives on it.
      if (n === 2) req.socket.destroy();
      else json(res, 200, heartbeatAnswer);
    });
    await client.heartbeat(heartbeat);
    await expect(client.heartbeat(heartbeat)).resolves.toEqual(heartbeatAnswer);
    expect(plane.received).toHaveLength(3);
    expect(plane.sockets).toHaveLength(2);
  });

  it('does not send again a request dropped on a connection of its own; the error names method and path', async () => {
    plane.answer((req) => req.socket.destroy());
    const err = (await client.heartbeat(heartbeat).catch((e: unknown) => e)) as Error;
    expect(err).not.toBeInstanceOf(ControlPlaneError);
    expect(err.message).toMatch(/^POST \/v1\/runner\/heartbeat: socket hang up/);
    expect(plane.received).toHaveLength(1);
  });

  it('rejects with an error naming method and path when nothing listens', async () => {
    const url = plane.url;
    await plane.close();
    connect({ url });
    const err = (await client.complete('job_1', {} as never).catch((e: unknown) => e)) as Error;
    expect(err).not.toBeInstanceOf(ControlPlaneError);
    expect(err.message).toMatch(/^POST \/v1\/runner\/leases\/job_1\/complete: .*ECONNREFUSED/);
  });

  it('registers with the join token when the kept credential is refused (401), and keeps the new one', async () => {
    const saved: string[] = [];
    connect({ keeper: { load: () => 'old_cred', save: (c) => void saved.push(c) } });
    plane.answer((req, res) => {
      if (req.url !== '/v1/runner/register') return json(res, 200, heartbeatAnswer);
      if (req.headers.authorization === 'Bearer old_cred') {
        return json(res, 401, { code: 'UNAUTHENTICATED', detail: 'unknown credential' }, 'application/problem+json');
      }
      json(res, 200, { runner_id: 'run_1', heartbeat_interval_ms: 1000, credential: 'new_cred' });
    });
    const registration = { name: 'n', zone: 'z', capacity: 1, address: null, labels: {}, languages: [] };
    await expect(client.register(registration)).resolves.toMatchObject({ runner_id: 'run_1', credential: 'new_cred' });
    expect(plane.received.map((r) => r.headers.authorization)).toEqual(['Bearer old_cred', 'Bearer join_tok']);
    expect(saved).toEqual(['new_cred']);
    await client.heartbeat(heartbeat);
    expect(plane.received.at(-1)!.headers.authorization).toBe('Bearer new_cred');
    expect(client.signingKey()).toBeDefined();
  });

  it('does not fall back to the join token on a refusal other than 401', async () => {
    connect({ keeper: { load: () => 'old_cred', save: () => {} } });
    plane.answer((_req, res) => json(res, 409, { code: 'CONFLICT', detail: 'name taken' }, 'application/problem+json'));
    const registration = { name: 'n', zone: 'z', capacity: 1, address: null, labels: {}, languages: [] };
    await expect(client.register(registration)).rejects.toMatchObject({ status: 409, code: 'CONFLICT' });
    expect(plane.received).toHaveLength(1);
  });
});
