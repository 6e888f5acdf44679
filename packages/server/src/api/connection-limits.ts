import type { Server } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { HttpLimits } from '../config.js';
import { sourcePrefixOf } from '../domain/source-prefix.js';

/** The Fastify server options that cut slow and half-sent requests (slowloris) but not slow answers. */
export function timeoutOptions(limits: HttpLimits) {
  return {
    // requestTimeout and headersTimeout bound only the receiving of a request: a long poll or an event
    // stream, whose request arrived whole, answers within its own bounds.
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks the timeouts above only this often (30 s by default): check often enough to honour them.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
  };
}

/**
 * Caps open connections: `maxConnections` in all (Node closes the ones beyond at once) and
 * `maxConnectionsPerSource` per source network, so one client holding sockets open cannot lock others out.
 * Memory is bounded by the open connections themselves.
 */
export function limitConnections(server: Server, limits: HttpLimits, registry: Registry): void {
  const refused = new Counter({
    name: 'kiln_http_connections_refused_total',
    help: 'Connections closed on arrival: over the total cap or over the per-source cap',
    labelNames: ['reason'],
    registers: [registry],
  });
  const perSource = new Map<string, number>();
  let open = 0;
  new Gauge({
    name: 'kiln_http_open_connections',
    help: 'Open HTTP connections',
    registers: [registry],
    collect() {
      this.set(open);
    },
  });
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => refused.inc({ reason: 'max_connections' }));
  server.on('connection', (socket) => {
    const source = sourcePrefixOf(socket.remoteAddress);
    const fromSource = perSource.get(source) ?? 0;
    if (fromSource >= limits.maxConnectionsPerSource) {
      refused.inc({ reason: 'per_source' });
      socket.destroy();
      return;
    }
    perSource.set(source, fromSource + 1);
    open += 1;
    socket.once('close', () => {
      open -= 1;
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
    });
  });
}
