import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { SIGNATURE_HEADERS } from '@kiln/core';

/**
 * Forwarding of proxied traffic from the runner to a port inside a sandbox, through the sandbox's port
 * relay (a host-only Unix socket). Bodies stream both ways; nothing is buffered whole.
 */

/** Headers that belong to one hop (RFC 9110 §7.6.1), plus the control plane's signature. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  ...Object.values(SIGNATURE_HEADERS),
]);

/** Headers of `headers` minus hop-by-hop ones and those the `connection` header names. */
export function endToEndHeaders(headers: http.IncomingHttpHeaders, keepUpgrade = false): http.OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (keepUpgrade && (name === 'connection' || name === 'upgrade')) out[name] = value;
    else if (!HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  }
  return out;
}

// Connections to a relay are kept for the next request: each new one costs a tunnel through the init.
const relayAgent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 1000 });

function problem(res: http.ServerResponse, status: number, code: string, detail: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ status, code, detail }));
}

/** Forwards one HTTP request to the relay at `socketPath` as `path`; a dead upstream is a 502. */
export function forwardHttp(req: http.IncomingMessage, res: http.ServerResponse, socketPath: string, path: string): void {
  const upstream = http.request(
    { socketPath, method: req.method, path, headers: endToEndHeaders(req.headers), agent: relayAgent },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEndHeaders(answer.headers));
      answer.pipe(res);
      // A body already here goes out in one write with the head. An answer whose body has not begun by
      // the next turn (server-sent events, a slow stream) gets its head at once: the control plane's
      // upstream timeout waits for the head, and the client may act on it.
      setImmediate(() => {
        if (!res.headersSent && !res.destroyed) res.flushHeaders();
      });
      answer.on('error', () => res.destroy());
    },
  );
  upstream.on('error', (err) => problem(res, 502, 'BAD_GATEWAY', `the service did not answer: ${err.message}`));
  res.once('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/**
 * Forwards an upgrade (WebSocket) as raw bytes: the request head is written to the relay and both
 * sockets are piped, so the service's 101 and every frame pass unchanged.
 */
export function forwardUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, socketPath: string, path: string): void {
  const upstream = net.connect(socketPath);
  const headers = endToEndHeaders(req.headers, true);
  const lines = [`${req.method ?? 'GET'} ${path} HTTP/1.1`];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
  }
  upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length) upstream.write(head);
  const closeBoth = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on('error', closeBoth);
  socket.on('error', closeBoth);
  upstream.on('close', () => socket.destroy());
  socket.on('close', () => upstream.destroy());
  upstream.pipe(socket);
  socket.pipe(upstream);
}
