import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { KilnError, signPlaneRequest } from '@kiln/core';
import { createProxyServer } from 'http-proxy-3';
import type { JobDeps } from '../services/job-deps.js';
import type { ServiceHosting } from '../services/hosted-services/hosting.js';
import { grantProxy, proxyTargetOf, SERVICE_TOKEN_COOKIE, type ProxyGrant, type ProxyTarget } from '../services/hosted-services/proxy-access.js';
import type { KilnApp } from './app.js';

/** Headers that belong to one hop (RFC 9110 §7.6.1); an upgrade keeps `connection` and `upgrade`. */
const HOP_BY_HOP = ['keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer'];

interface InFlight {
  grant: ProxyGrant;
  target: ProxyTarget;
  secureCookie: boolean;
  timer?: NodeJS.Timeout;
  timedOut?: boolean;
}

/**
 * The service proxy (issue 9, point 2) on every control-plane replica: `/v1/services/{id}/proxy/…`,
 * `/v1/sessions/{id}/ports/{port}/proxy/…`, and `{id}.{KILN_SERVICES_DOMAIN}` by Host. Each request is
 * authorised here, signed, and forwarded to the runner holding the sandbox (http-proxy-3: streamed
 * bodies both ways, server-sent events unbuffered, WebSocket upgrades); the runner forwards it to the
 * port. An upstream that does not begin answering in time is a 504, one that cannot be reached a 502.
 */
export function installServiceProxy(app: KilnApp, deps: JobDeps, hosting: ServiceHosting): void {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024, keepAliveMsecs: 1000 });
  const proxy = createProxyServer({ agent, xfwd: true, ws: true });
  const inFlight = new WeakMap<IncomingMessage, InFlight>();

  proxy.on('proxyReq', (proxyReq, req) => {
    const state = inFlight.get(req);
    if (!state) return;
    state.timer = setTimeout(() => {
      state.timedOut = true;
      proxyReq.destroy();
    }, hosting.upstreamTimeoutMs);
    proxyReq.once('response', () => clearTimeout(state.timer));
    proxyReq.once('close', () => clearTimeout(state.timer));
  });
  proxy.on('proxyRes', (proxyRes, req) => {
    const state = inFlight.get(req);
    if (!state?.grant.setCookieToken) return;
    // The query token becomes a cookie of this service alone: its path (or its own host), HttpOnly.
    const existing = proxyRes.headers['set-cookie'] ?? [];
    proxyRes.headers['set-cookie'] = [...existing, tokenCookie(state)];
  });

  app.addHook('onRequest', async (request, reply) => {
    const target = proxyTargetOf(request.url, request.headers.host, hosting);
    if (!target) return;
    const req = request.raw;
    const grant = await grantProxy(deps, app.kiln.secrets, hosting, target, req.headers);
    reply.hijack();
    const res = reply.raw;
    const state: InFlight = { grant, target, secureCookie: hosting.publicUrl.startsWith('https:') };
    if (grant.setCookieToken && (req.method === 'GET' || req.method === 'HEAD')) {
      // A browser opening `?kiln_token=`: the token moves to the cookie and out of the address bar.
      res.writeHead(303, { location: publicPath(request.url, target), 'set-cookie': tokenCookie(state), 'cache-control': 'no-store' });
      res.end();
      return;
    }
    inFlight.set(req, state);
    prepare(req, grant, false);
    proxy.web(req, res, { target: grant.runner.address!, headers: signed(grant, req.method ?? 'GET') }, (err) => {
      answerProblem(res, state.timedOut ? gatewayTimeout(hosting) : badGateway(err));
    });
  });

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = proxyTargetOf(req.url ?? '/', req.headers.host, hosting);
    if (!target) return; // not ours
    void (async () => {
      const grant = await grantProxy(deps, app.kiln.secrets, hosting, target, req.headers);
      prepare(req, grant, true);
      proxy.ws(req, socket, head, { target: grant.runner.address!, headers: signed(grant, req.method ?? 'GET') }, () => socket.destroy());
    })().catch((err: unknown) => {
      const e = err instanceof KilnError ? err : badGateway(err as Error);
      const body = JSON.stringify({ status: e.status, code: e.code, detail: e.message });
      socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
  });
  app.addHook('onClose', async () => {
    proxy.close();
    agent.destroy();
  });
}

/** The request as the runner gets it: its path under the runner's proxy route, one hop's headers gone. */
function prepare(req: IncomingMessage, grant: ProxyGrant, upgrade: boolean): void {
  const named = String(req.headers.connection ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h && h !== 'upgrade');
  for (const name of [...HOP_BY_HOP, ...named]) delete req.headers[name];
  if (!upgrade) {
    delete req.headers.upgrade;
    delete req.headers.connection;
  }
  req.url = grant.runnerPath;
}

function signed(grant: ProxyGrant, method: string): Record<string, string> {
  // Wall-clock time: the runner checks freshness against its own clock. Bodies stream unhashed.
  return signPlaneRequest(grant.runner.signing_key!, { method, pathWithQuery: grant.runnerPath, streamed: true }, Date.now());
}

function tokenCookie(state: InFlight): string {
  const token = state.grant.setCookieToken!;
  return `${SERVICE_TOKEN_COOKIE}=${token}; Path=${state.target.cookiePath}; HttpOnly; ${state.secureCookie ? 'Secure; SameSite=None' : 'SameSite=Lax'}`;
}

/** The URL the client asked for, minus `kiln_token`. */
function publicPath(url: string, target: ProxyTarget): string {
  const q = target.upstreamPath.indexOf('?');
  const query = q < 0 ? '' : target.upstreamPath.slice(q);
  const path = url.split('?')[0]!;
  return `${path}${query}`;
}

function badGateway(err: Error): KilnError {
  return new KilnError('BAD_GATEWAY', `the service could not be reached: ${err.message}; retry, or look at its logs`);
}

function gatewayTimeout(hosting: ServiceHosting): KilnError {
  return new KilnError('GATEWAY_TIMEOUT', `the service did not begin answering within ${hosting.upstreamTimeoutMs} ms`);
}

function answerProblem(res: ServerResponse | Duplex, e: KilnError): void {
  if (!('writeHead' in res) || res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(e.status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ type: 'about:blank', title: e.code, status: e.status, code: e.code, detail: e.message }));
}
