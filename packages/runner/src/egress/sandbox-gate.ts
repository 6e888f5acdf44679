import { spawn, type ChildProcess } from 'node:child_process';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { AddressGuard } from './address-guard.js';
import { Allowlist, normalizeHost } from './allowlist.js';
import type { EgressConfig } from './config.js';
import { EgressStats, type EgressDenialReason, type EgressSummary } from './egress-stats.js';
import { endToEnd, refuseHttp, refuseRaw, splitAuthority, statusFor } from './proxy-http.js';
import type { HostResolver } from './resolver.js';

export interface EgressLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface GateDeps {
  /** kiln-egress-pump, which carries CONNECT tunnels; without it they stay in JavaScript. */
  pumpPath?: string;
  /** The sandbox's host uid and gid, which the pump runs as. */
  runAs?: { uid: number; gid: number };
  config: EgressConfig;
  guard: AddressGuard;
  resolver: HostResolver;
  logger: EgressLogger;
}

/** Who a gate serves: the sandbox (its socket is its identity) and, for logs, what it runs for. */
export interface GateIdentity {
  sandbox_id: string;
  tenant_id?: string;
  job_id?: string;
  session_id?: string;
  service_id?: string;
}

interface ConnectionBytes {
  sent: number;
  received: number;
}

type Decision = { allowed: true; address: string } | { allowed: false; reason: EgressDenialReason; detail: string };


const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,62})?(\.[a-z0-9]([a-z0-9-]{0,62})?)*$/;

/**
 * The egress proxy of one sandbox: an HTTP proxy (CONNECT tunnels and plain absolute-URI requests) on a
 * Unix socket that only this sandbox's relay reaches. Every connection is decided by the sandbox's
 * policy (`host:port` allowlist), then by the address guard on each address the proxy itself resolved,
 * and then opened to that very address; bytes are counted both ways against the sandbox's caps.
 */
export class SandboxGate {
  readonly stats = new EgressStats();
  private readonly server: http.Server;
  private readonly allowlist: Allowlist;
  private readonly live = new Set<Duplex>();
  private readonly pumps = new Set<ChildProcess>();
  private closed = false;

  constructor(
    readonly identity: GateIdentity,
    allow: readonly string[],
    private readonly deps: GateDeps,
  ) {
    this.allowlist = new Allowlist(allow);
    this.server = http.createServer({ headersTimeout: 30_000, requestTimeout: 0, keepAliveTimeout: 5_000 });
    this.server.on('connection', (socket: Socket) => this.track(socket));
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.tunnel(req, socket, head));
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.forward(req, res));
    this.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
      // Plain-HTTP upgrades through a proxy are rare; clients open WebSockets through CONNECT.
      refuseRaw(socket, 400, 'bad_request', 'upgrades go through CONNECT (ws:// and wss:// via HTTPS_PROXY)');
    });
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops taking connections, cuts the open ones, and answers what the sandbox did. */
  async close(): Promise<EgressSummary> {
    if (!this.closed) {
      this.closed = true;
      const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const s of this.live) s.destroy();
      const pumpsGone = [...this.pumps].map((p) => new Promise<void>((resolve) => {
        p.once('close', () => resolve());
        p.kill('SIGKILL');
      }));
      await Promise.all([done, ...pumpsGone]);
    }
    return this.stats.summary();
  }

  private track(stream: Duplex): void {
    this.live.add(stream);
    stream.once('close', () => this.live.delete(stream));
  }

  /** The policy, the caps, then DNS and the address guard: the first refusal wins. */
  private async decide(rawHost: string, port: number): Promise<Decision> {
    const host = normalizeHost(rawHost.startsWith('[') && rawHost.endsWith(']') ? rawHost.slice(1, -1) : rawHost);
    if (!(net.isIP(host) || (host.length <= 253 && HOST_NAME.test(host))) || !Number.isInteger(port) || port < 1 || port > 65_535) {
      return { allowed: false, reason: 'bad_request', detail: 'the target must be host:port' };
    }
    if (!this.allowlist.allows(host, port)) {
      return { allowed: false, reason: 'not_allowed', detail: `${host}:${port} is not in the policy's network.allow` };
    }
    const { config } = this.deps;
    if (this.stats.open >= config.KILN_EGRESS_MAX_CONNECTIONS || this.stats.connectionsTotal >= config.KILN_EGRESS_MAX_TOTAL_CONNECTIONS) {
      return { allowed: false, reason: 'connection_cap', detail: 'the sandbox has used its egress connections' };
    }
    if (this.stats.bytesTotal >= config.KILN_EGRESS_MAX_BYTES) {
      return { allowed: false, reason: 'byte_cap', detail: 'the sandbox has used its egress bytes' };
    }
    let addresses: string[];
    try {
      addresses = (await this.deps.resolver.resolve(host)).addresses;
    } catch (err) {
      return { allowed: false, reason: 'resolve_failed', detail: (err as Error).message };
    }
    // Every address must pass: a name that also points inside is refused outright, not half-used.
    for (const address of addresses) {
      const verdict = this.deps.guard.check(address);
      if (!verdict.allowed) {
        return { allowed: false, reason: 'address_refused', detail: `${host} resolves to a ${verdict.range} address (${address})` };
      }
    }
    return { allowed: true, address: addresses[0]! };
  }

  private async tunnel(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    const { host, port } = splitAuthority(req.url ?? '');
    const started = performance.now();
    const decision = await this.decide(host, port);
    if (!decision.allowed) {
      this.refuse(host, port, decision);
      refuseRaw(client, statusFor(decision.reason), decision.reason, decision.detail);
      return;
    }
    // A tunnel whose client sent nothing past its CONNECT yet (all but impatient ones) is carried by the
    // native pump. Bytes a client sent early were read into this process (with the request, or while
    // DNS was asked): that tunnel stays on this JavaScript path, which forwards them first. Checked and
    // handed over in one synchronous run, so no read can come in between.
    const early = client.readableLength > 0 ? (client.read() as Buffer | null) : null;
    if (early) head = Buffer.concat([head, early]);
    if (head.length === 0 && this.deps.pumpPath) return this.pumpTunnel(client, host, port, decision.address, started);
    const conn: ConnectionBytes = { sent: 0, received: 0 };
    const upstream = this.open(decision.address, port, client);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0 && this.count(conn, 'sent', head, upstream)) upstream.write(head);
      client.on('data', (chunk: Buffer) => {
        if (this.count(conn, 'sent', chunk, upstream) && !upstream.write(chunk)) client.pause();
      });
      upstream.on('drain', () => client.resume());
      upstream.on('data', (chunk: Buffer) => {
        if (this.count(conn, 'received', chunk, client) && !client.write(chunk)) upstream.pause();
      });
      client.on('drain', () => upstream.resume());
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
    });
    upstream.once('error', (err) => {
      if (connected) return client.destroy();
      this.stats.connectionsFailed += 1;
      refuseRaw(client, 502, 'unreachable', `${host}:${port} could not be reached: ${err.message}`);
    });
    client.once('error', () => upstream.destroy());
    client.once('close', () => {
      upstream.destroy();
      this.finish(host, port, decision.address, started, 'connect', conn);
    });
  }

  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      url = new URL('invalid:');
    }
    const started = performance.now();
    const port = url.port ? Number(url.port) : 80;
    if (url.protocol !== 'http:') {
      this.refuse(url.hostname || '-', port, { reason: 'bad_request' });
      return refuseHttp(res, 400, 'bad_request', 'send absolute http:// URLs; https:// goes through CONNECT');
    }
    const decision = await this.decide(url.hostname, port);
    if (!decision.allowed) {
      this.refuse(url.hostname, port, decision);
      return refuseHttp(res, statusFor(decision.reason), decision.reason, decision.detail);
    }
    const conn: ConnectionBytes = { sent: 0, received: 0 };
    const upstreamSocket = this.open(decision.address, port, req.socket);
    const upstream = http.request({
      createConnection: () => upstreamSocket,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers: { ...endToEnd(req.headers), host: url.host },
      setHost: false,
    });
    req.on('data', (chunk: Buffer) => this.count(conn, 'sent', chunk, upstreamSocket));
    req.pipe(upstream);
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
      answer.on('data', (chunk: Buffer) => this.count(conn, 'received', chunk, upstreamSocket));
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) {
        if (upstreamSocket.connecting || upstreamSocket.bytesRead === 0) this.stats.connectionsFailed += 1;
        refuseHttp(res, 502, 'unreachable', `${url.host} could not be reached: ${err.message}`);
      } else res.destroy();
    });
    res.once('close', () => {
      upstreamSocket.destroy();
      this.finish(url.hostname, port, decision.address, started, 'http', conn);
    });
  }

  /**
   * Hands the tunnel to kiln-egress-pump, which connects to the checked address, answers the client and
   * splices the bytes both ways; it reports what it moved when the tunnel ends. The pump runs as the
   * sandbox's own host uid, and gets what is left of the sandbox's byte budget.
   */
  private pumpTunnel(client: Socket, host: string, port: number, address: string, started: number): void {
    const { config } = this.deps;
    this.stats.connectionsAllowed += 1;
    this.stats.open += 1;
    const budget = Math.max(1, config.KILN_EGRESS_MAX_BYTES - this.stats.bytesTotal);
    let pump: ChildProcess;
    try {
      pump = spawn(
        this.deps.pumpPath!,
        [address, String(port), String(budget), String(config.KILN_EGRESS_CONNECT_TIMEOUT_MS), String(config.KILN_EGRESS_IDLE_TIMEOUT_MS)],
        { stdio: [client, 'pipe', 'ignore'], env: {}, ...(this.deps.runAs ?? {}) },
      );
    } catch (err) {
      this.stats.open -= 1;
      this.stats.connectionsFailed += 1;
      refuseRaw(client, 502, 'unreachable', `the tunnel could not start: ${(err as Error).message}`);
      return;
    }
    // The pump has its own copy of the socket now: this process neither reads nor writes it again.
    client.destroy();
    this.pumps.add(pump);
    const conn: ConnectionBytes = { sent: 0, received: 0 };
    let connected = false;
    let pending = '';
    // Totals so far (progress every MiB, then done): counted as they come, so the sandbox's byte cap
    // holds across its tunnels at once; past it, every tunnel of the sandbox is cut.
    const account = (sent: number, received: number) => {
      this.stats.bytesSent += Math.max(0, sent - conn.sent);
      this.stats.bytesReceived += Math.max(0, received - conn.received);
      conn.sent = Math.max(conn.sent, sent);
      conn.received = Math.max(conn.received, received);
      if (this.stats.bytesTotal > config.KILN_EGRESS_MAX_BYTES) for (const p of this.pumps) p.kill('SIGKILL');
    };
    pump.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let at: number;
      while ((at = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, at);
        pending = pending.slice(at + 1);
        const counts = /^(?:progress|done) (\d+) (\d+)/.exec(line);
        if (counts) account(Number(counts[1]), Number(counts[2]));
        else if (line === 'connected') connected = true;
      }
      if (pending.length > 1024) pending = '';
    });
    pump.once('error', () => {
      // spawn failures arrive here too; the close below still settles the counts
    });
    // A pump killed at the byte cap resets its pipe: without a listener that error would end the runner.
    pump.stdout!.on('error', () => undefined);
    pump.once('close', () => {
      this.pumps.delete(pump);
      this.stats.open -= 1;
      if (!connected) this.stats.connectionsFailed += 1;
      this.finish(host, port, address, started, 'connect', conn);
    });
  }

  /** A connection to a checked address (never a name: no second lookup), counted and timed. */
  private open(address: string, port: number, client: Duplex): Socket {
    const { config } = this.deps;
    this.stats.connectionsAllowed += 1;
    this.stats.open += 1;
    const upstream = net.connect({ host: address, port, noDelay: true });
    this.track(upstream);
    const connectTimer = setTimeout(() => upstream.destroy(new Error('connect timed out')), config.KILN_EGRESS_CONNECT_TIMEOUT_MS);
    upstream.once('connect', () => clearTimeout(connectTimer));
    upstream.once('close', () => {
      clearTimeout(connectTimer);
      this.stats.open -= 1;
    });
    upstream.setTimeout(config.KILN_EGRESS_IDLE_TIMEOUT_MS, () => {
      upstream.destroy();
      client.destroy();
    });
    return upstream;
  }

  /** Adds the bytes; past the sandbox's byte cap the connection is cut (false). */
  private count(conn: ConnectionBytes, direction: 'sent' | 'received', chunk: Buffer, victim: Duplex): boolean {
    conn[direction] += chunk.length;
    if (direction === 'sent') this.stats.bytesSent += chunk.length;
    else this.stats.bytesReceived += chunk.length;
    if (this.stats.bytesTotal <= this.deps.config.KILN_EGRESS_MAX_BYTES) return true;
    victim.destroy();
    return false;
  }

  private refuse(host: string, port: number, decision: { reason: EgressDenialReason; detail?: string }): void {
    this.stats.deny(host, port, decision.reason);
    this.deps.logger.info(
      { ...this.identity, host, port, outcome: 'denied', reason: decision.reason, detail: decision.detail },
      'egress denied',
    );
  }

  private finish(host: string, port: number, address: string, started: number, kind: 'connect' | 'http', conn: ConnectionBytes): void {
    this.deps.logger.info(
      {
        ...this.identity,
        host,
        port,
        address,
        kind,
        outcome: 'allowed',
        bytes_sent: conn.sent,
        bytes_received: conn.received,
        duration_ms: Math.round(performance.now() - started),
      },
      'egress connection closed',
    );
  }
}
