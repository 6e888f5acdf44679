import http from 'node:http';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestDns, type TestDns } from '../../../../test/support/egress/test-dns.js';
import { startTestHosts, type TestHosts } from '../../../../test/support/egress/test-hosts.js';
import { egressConfigFromEnv } from './config.js';
import { EgressProxy, type EgressLease } from './egress-proxy.js';

// The runner's egress proxy against a test "internet" in a network namespace and a resolver the test
// controls (root: ip netns). No sandbox here: the proxy's socket is driven directly.
let hosts: TestHosts;
let dns: TestDns;
let proxy: EgressProxy;
let gate: EgressLease;
/** A listener on loopback: names that resolve to 127.0.0.1 must never reach it. */
let loopbackTrap: net.Server;
let trapped = 0;

const FORBIDDEN: Record<string, string> = {
  'loop.allowed.test': '127.0.0.1',
  'ten.allowed.test': '10.0.0.1',
  'metadata.allowed.test': '169.254.169.254',
  'v6loop.allowed.test': '::1',
  'mapped.allowed.test': '::ffff:127.0.0.1',
};

beforeAll(async () => {
  hosts = await startTestHosts(['api.allowed.test']);
  dns = await startTestDns({ 'api.allowed.test': [hosts.address], 'other.blocked.test': [hosts.address] });
  for (const [name, address] of Object.entries(FORBIDDEN)) dns.set(name, [address]);
  loopbackTrap = net.createServer((s) => {
    trapped += 1;
    s.destroy();
  });
  await new Promise<void>((r) => loopbackTrap.listen(0, '127.0.0.1', r));
  proxy = new EgressProxy(egressConfigFromEnv({ KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr, KILN_EGRESS_RESOLVER: dns.server }));
  const trapPort = (loopbackTrap.address() as net.AddressInfo).port;
  gate = await proxy.open({
    sandbox_id: 'sbx_proxytest',
    allow: ['api.allowed.test:80', 'api.allowed.test:443', 'api.allowed.test:9', 'api.allowed.test:8080', `*.allowed.test:${trapPort}`, '*.allowed.test:80'],
    uid: 0,
    gid: 0,
  });
}, 60_000);

afterAll(async () => {
  await gate?.close();
  await proxy?.closeAll();
  hosts?.stop();
  await dns?.stop();
  loopbackTrap?.close();
});

const socketPath = () => `${gate.hostDir}/proxy.sock`;

/** Opens a CONNECT tunnel; resolves with the status line's code and the socket (open when 200). */
function connectTunnel(authority: string): Promise<{ status: number; socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socketPath(), method: 'CONNECT', path: authority, agent: false });
    req.on('connect', (res, socket, head) => resolve({ status: res.statusCode ?? 0, socket, head: head.toString() }));
    req.on('error', reject);
    req.end();
  });
}

/** A plain request through the proxy (absolute URI), as curl and requests send it for http:// URLs. */
function proxiedGet(url: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socketPath(), method: body ? 'POST' : 'GET', path: url, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('egress proxy', () => {
  it('forwards plain HTTP to an allowed host, with its Host header and body', async () => {
    const res = await proxiedGet('http://api.allowed.test/hello?x=1', 'abc');
    expect(res.status).toBe(200);
    expect(res.body).toContain('POST /hello host=api.allowed.test body=3');
  });

  it('tunnels HTTPS (a certificate of the test CA) to an allowed host', async () => {
    const tunnel = await connectTunnel('api.allowed.test:443');
    expect(tunnel.status).toBe(200);
    const secure = tls.connect({ socket: tunnel.socket, servername: 'api.allowed.test', ca: hosts.caPem });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    secure.write('GET /secure HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: close\r\n\r\n');
    let text = '';
    for await (const chunk of secure) text += String(chunk);
    expect(text).toMatch(/^HTTP\/1.1 200/);
    expect(text).toContain('GET /secure host=api.allowed.test');
  });

  it('forwards what a client sends before the tunnel is answered (an impatient client)', async () => {
    const socket = net.connect(socketPath());
    socket.write(
      'CONNECT api.allowed.test:80 HTTP/1.1\r\nHost: api.allowed.test:80\r\n\r\n' +
        'GET /early HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: close\r\n\r\n',
    );
    let text = '';
    for await (const chunk of socket) text += String(chunk);
    expect(text).toMatch(/^HTTP\/1.1 200 Connection Established/);
    expect(text).toContain('GET /early host=api.allowed.test');
  });

  it('tunnels a WebSocket to an allowed host', async () => {
    const tunnel = await connectTunnel('api.allowed.test:8080');
    expect(tunnel.status).toBe(200);
    const ws = new WebSocket('ws://api.allowed.test:8080/', { createConnection: () => tunnel.socket });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', (data: Buffer) => resolve(data.toString()));
      ws.once('error', reject);
    });
    ws.close();
    expect(reply).toBe('echo: ping');
  });

  it('refuses a host or a port the policy does not list, without resolving it', async () => {
    const before = dns.queries('other.blocked.test');
    const plain = await proxiedGet('http://other.blocked.test/');
    expect(plain.status).toBe(403);
    expect(plain.headers['x-kiln-egress']).toBe('not_allowed');
    const tunnel = await connectTunnel('other.blocked.test:443');
    expect(tunnel.status).toBe(403);
    expect((await connectTunnel('api.allowed.test:22')).status).toBe(403);
    expect(dns.queries('other.blocked.test')).toBe(before);
  });

  it('refuses names that resolve to loopback, private, link-local, ::1 and IPv4-mapped addresses, without connecting', async () => {
    const hostConnections = await hosts.connections();
    const trapPort = (loopbackTrap.address() as net.AddressInfo).port;
    for (const name of Object.keys(FORBIDDEN)) {
      const tunnel = await connectTunnel(`${name}:${trapPort}`);
      expect(tunnel.status, name).toBe(403);
      const plain = await proxiedGet(`http://${name}/`);
      expect(plain.status, name).toBe(403);
      expect(plain.headers['x-kiln-egress'], name).toBe('address_refused');
      expect(dns.queries(name), name).toBeGreaterThan(0);
    }
    expect(trapped).toBe(0);
    expect(await hosts.connections()).toBe(hostConnections);
  });

  it('answers 502 for an allowed host that does not answer on the port, through CONNECT and plain HTTP', async () => {
    const tunnel = await connectTunnel('api.allowed.test:9');
    expect(tunnel.status).toBe(502);
    const plain = await proxiedGet('http://api.allowed.test:9/');
    expect(plain.status).toBe(502);
    expect(plain.headers['x-kiln-egress']).toBe('unreachable');
  });

  it('refuses requests that are not proxy requests', async () => {
    const relative = await proxiedGet('/not-absolute');
    expect(relative.status).toBe(400);
    expect((await connectTunnel('no-port-here')).status).toBe(400);
  });

  it('counts connections, bytes and denials per sandbox, with the denials grouped', async () => {
    const summary = await proxy.open({ sandbox_id: 'sbx_counted', allow: ['api.allowed.test:80'], uid: 0, gid: 0 }).then(async (lease) => {
      const get = (url: string) =>
        new Promise<number>((resolve, reject) => {
          const req = http.get({ socketPath: `${lease.hostDir}/proxy.sock`, path: url, agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
        });
      expect(await get('http://api.allowed.test/a')).toBe(200);
      expect(await get('http://api.allowed.test/b')).toBe(200);
      for (let i = 0; i < 5; i++) expect(await get('http://evil.example/')).toBe(403);
      return lease.close();
    });
    expect(summary.connections_allowed).toBe(2);
    expect(summary.connections_denied).toBe(5);
    expect(summary.bytes_received).toBeGreaterThan(0);
    expect(summary.denied).toEqual([{ host: 'evil.example', port: 80, reason: 'not_allowed', count: 5 }]);
  });

  it('keeps the byte cap across tunnels running at once', async () => {
    const MiB = 1024 * 1024;
    const capped = new EgressProxy(
      egressConfigFromEnv({ KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr, KILN_EGRESS_RESOLVER: dns.server, KILN_EGRESS_MAX_BYTES: String(4 * MiB) }),
    );
    const lease = await capped.open({ sandbox_id: 'sbx_capped_many', allow: ['api.allowed.test:80'], uid: 0, gid: 0 });
    const download = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ socketPath: `${lease.hostDir}/proxy.sock`, method: 'CONNECT', path: 'api.allowed.test:80', agent: false });
        req.on('connect', async (_res, socket) => {
          socket.write('GET /bytes?n=33554432 HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: close\r\n\r\n');
          let received = 0;
          socket.on('error', () => undefined);
          // A tunnel cut at the cap may end in a reset, which rejects the iteration: count what came.
          try {
            for await (const chunk of socket) received += (chunk as Buffer).length;
          } catch {
            // the reset is the cut
          }
          resolve(received);
        });
        req.on('error', reject);
        req.end();
      });
    const received = await Promise.all([download(), download(), download()]);
    const summary = await lease.close();
    // Each tunnel reports every MiB: the three together stop within a few MiB of the cap, far from 96 MiB.
    expect(received.reduce((a, b) => a + b, 0)).toBeLessThan(4 * MiB + 3 * 2 * MiB);
    expect(summary.bytes_received).toBeLessThan(4 * MiB + 3 * 2 * MiB);
  });

  it('caps one sandbox\'s open connections and its bytes', async () => {
    const capped = new EgressProxy(
      egressConfigFromEnv({
        KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr,
        KILN_EGRESS_RESOLVER: dns.server,
        KILN_EGRESS_MAX_CONNECTIONS: '2',
        KILN_EGRESS_MAX_BYTES: '100000',
      }),
    );
    const lease = await capped.open({ sandbox_id: 'sbx_capped', allow: ['api.allowed.test:443', 'api.allowed.test:80'], uid: 0, gid: 0 });
    const tunnel = (authority: string) =>
      new Promise<{ status: number; socket: Socket }>((resolve, reject) => {
        const req = http.request({ socketPath: `${lease.hostDir}/proxy.sock`, method: 'CONNECT', path: authority, agent: false });
        req.on('connect', (res, socket) => resolve({ status: res.statusCode ?? 0, socket }));
        req.on('error', reject);
        req.end();
      });
    const first = await tunnel('api.allowed.test:443');
    const second = await tunnel('api.allowed.test:443');
    const third = await tunnel('api.allowed.test:443');
    expect([first.status, second.status, third.status]).toEqual([200, 200, 429]);
    first.socket.destroy();
    second.socket.destroy();
    // Once the proxy has seen them close, a connection is allowed again (polled: closing is asynchronous).
    let big = await tunnel('api.allowed.test:80');
    for (let i = 0; i < 100 && big.status === 429; i++) {
      await new Promise((r) => setTimeout(r, 20));
      big = await tunnel('api.allowed.test:80');
    }
    expect(big.status).toBe(200);
    // The byte cap: a body larger than the cap is cut; the next connection is refused.
    big.socket.write('GET /bytes?n=1000000 HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: close\r\n\r\n');
    let received = 0;
    for await (const chunk of big.socket) received += (chunk as Buffer).length;
    expect(received).toBeLessThan(1_000_000);
    // The pump reports its bytes as it exits, just after the socket closed: polled, as above. A tunnel
    // opened in that moment is cut when the report lands, before it is answered (a hang-up): also a cut.
    const tunnelOrCut = (authority: string) =>
      tunnel(authority).catch(() => ({ status: 0, socket: undefined }) as { status: number; socket?: Socket });
    let after: { status: number; socket?: Socket } = await tunnelOrCut('api.allowed.test:80');
    for (let i = 0; i < 100 && after.status !== 429; i++) {
      after.socket?.destroy();
      await new Promise((r) => setTimeout(r, 20));
      after = await tunnelOrCut('api.allowed.test:80');
    }
    expect(after.status).toBe(429);
    const summary = await lease.close();
    expect(new Set(summary.denied.map((d) => d.reason))).toEqual(new Set(['byte_cap', 'connection_cap']));
  });
});
