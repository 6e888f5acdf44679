import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { EgressDenialReason } from './egress-stats.js';

/** The proxy's HTTP details: targets, end-to-end headers, and refusals that say why. */

/** Headers that belong to one hop (RFC 9110 §7.6.1) or to the proxy, never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** `host:port` or `[v6]:port` of a CONNECT request. */
export function splitAuthority(authority: string): { host: string; port: number } {
  const at = authority.lastIndexOf(':');
  if (at <= 0) return { host: authority.slice(0, 253) || '-', port: 0 };
  const portText = authority.slice(at + 1);
  return { host: authority.slice(0, at).slice(0, 260), port: /^[0-9]{1,5}$/.test(portText) ? Number(portText) : 0 };
}

export function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export function statusFor(reason: EgressDenialReason): number {
  if (reason === 'bad_request') return 400;
  if (reason === 'resolve_failed') return 502;
  if (reason === 'connection_cap' || reason === 'byte_cap') return 429;
  return 403;
}

/** The proxy's refusals say why in a header and a one-line body (curl -v and pip show them). */
export function refuseRaw(socket: Socket, status: number, reason: string, detail: string): void {
  const body = `kiln egress: ${detail}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Refused'}\r\nX-Kiln-Egress: ${reason}\r\n` +
      `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function refuseHttp(res: ServerResponse, status: number, reason: string, detail: string): void {
  res.writeHead(status, { 'x-kiln-egress': reason, 'content-type': 'text/plain', connection: 'close' });
  res.end(`kiln egress: ${detail}\n`);
}
