import http from 'node:http';
import https from 'node:https';

export interface KeepAliveHttpOptions {
  /** Connections open to the server at most; requests beyond wait for one. @default 16 */
  maxSockets?: number;
  /** Idle connections kept for reuse at most; the rest are closed once their request ends. @default 8 */
  maxFreeSockets?: number;
  /**
   * An idle connection is closed after this long. Keep it under the server's keep-alive timeout (the
   * control plane's is 5000 ms by default) so the client, not the server, closes an idle connection:
   * a request sent as the server closes it fails. A shorter `Keep-Alive: timeout=` the server
   * announces wins (Node lets such a connection go one second before it).
   * @default 4000
   */
  idleSocketMs?: number;
  /** The largest answer buffered; a longer one is cut and its request rejected. @default 67108864 (64 MiB) */
  maxResponseBytes?: number;
}

/** One request: sent whole, answered whole. */
export interface HttpExchange {
  method: string;
  /** Path and query, after the base URL's own path. */
  path: string;
  headers: Record<string, string>;
  body: Buffer | string;
  /** The whole exchange, from sending to the last byte of the answer, must fit in this. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface HttpAnswer {
  status: number;
  body: Buffer;
}

/** The server closed a kept-alive connection as a request went out on it: the request was never seen. */
class StaleConnectionError extends Error {}

const CONNECTION_LOST_CODES = new Set(['ECONNRESET', 'EPIPE']);

/**
 * Requests to one HTTP(S) origin over kept-alive connections of a pool this client owns. node:http rather
 * than fetch: fetch (undici and its web streams) costs several times its CPU per small request on Node 20,
 * and a runner makes a few per job. Free connections are unref'd by Node, so an idle pool never keeps
 * the process alive; `close()` ends them at once.
 */
export class KeepAliveHttp {
  private readonly agent: http.Agent;
  private readonly send: typeof http.request;
  private readonly origin: { protocol: string; hostname: string; port: number | undefined };
  private readonly basePath: string;
  private readonly maxResponseBytes: number;

  constructor(baseUrl: string, options: KeepAliveHttpOptions = {}) {
    const url = new URL(baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(`${baseUrl}: the control plane is reached over http: or https:, not ${url.protocol}`);
    }
    const secure = url.protocol === 'https:';
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxSockets ?? 16,
      maxFreeSockets: options.maxFreeSockets ?? 8,
      // Node applies this to idle connections (and lowers it to a server's Keep-Alive hint); a busy one's
      // timeout only emits an event nobody listens to: each request keeps its own deadline.
      timeout: options.idleSocketMs ?? 4000,
    };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.send = secure ? https.request : http.request;
    this.origin = {
      protocol: url.protocol,
      // An IPv6 literal is bracketed in a URL, not in a host name.
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port ? Number(url.port) : undefined,
    };
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
  }

  /**
   * Sends a request and buffers its answer. Rejects on a timeout (a `TimeoutError`), an abort (the
   * signal's reason), an answer over the bound, or a lost connection (an Error naming method and path).
   * A request that found its kept-alive connection closed by the server, before any answer, is sent once
   * more on a new connection: the server never saw it.
   */
  async request(exchange: HttpExchange): Promise<HttpAnswer> {
    const deadline = Date.now() + exchange.timeoutMs;
    try {
      return await this.attempt(exchange, this.agent, exchange.timeoutMs);
    } catch (err) {
      if (!(err instanceof StaleConnectionError)) throw err;
      // A one-off connection of its own: another pooled one may be just as stale.
      return this.attempt(exchange, false, Math.max(0, deadline - Date.now()));
    }
  }

  /** Closes every connection, idle or busy (their requests reject). The pool opens new ones if asked again. */
  close(): void {
    this.agent.destroy();
  }

  private attempt(exchange: HttpExchange, agent: http.Agent | false, timeoutMs: number): Promise<HttpAnswer> {
    const { method, path, signal } = exchange;
    const maxBytes = this.maxResponseBytes;
    return new Promise<HttpAnswer>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      let settled = false;
      let answered = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        outcome();
      };
      const fail = (err: unknown) =>
        settle(() => {
          req.destroy();
          reject(err);
        });
      const lost = (err: Error) => new Error(`${method} ${path}: ${err.message}`, { cause: err });
      const tooLong = () => new Error(`${method} ${path}: the answer is over ${maxBytes} bytes; it was not read`);

      const req = this.send(
        {
          ...this.origin,
          path: this.basePath + path,
          method,
          agent,
          headers: { ...exchange.headers, 'content-length': String(Buffer.byteLength(exchange.body)) },
        },
        (res) => {
          answered = true;
          if (Number(res.headers['content-length']) > maxBytes) {
            fail(tooLong());
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes) fail(tooLong());
            else chunks.push(chunk);
          });
          res.on('end', () =>
            settle(() => resolve({ status: res.statusCode ?? 0, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) })),
          );
          res.on('error', (err) => fail(lost(err)));
          res.on('close', () => {
            if (!res.complete) fail(lost(new Error('the connection closed before the answer ended')));
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        const stale = !answered && req.reusedSocket && CONNECTION_LOST_CODES.has(err.code ?? '');
        fail(stale ? new StaleConnectionError(err.message, { cause: err }) : lost(err));
      });
      // Like fetch's AbortSignal.timeout: the deadline alone never keeps the process alive.
      const timer = setTimeout(
        () => fail(new DOMException(`${method} ${path}: no answer within ${exchange.timeoutMs} ms`, 'TimeoutError')),
        timeoutMs,
      );
      timer.unref();
      const onAbort = () => fail(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end(exchange.body);
    });
  }
}
