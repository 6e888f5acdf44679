import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { JOB_BODY_LIMIT_BYTES, KilnError } from '@kiln/core';
import { createKilnMcpServer } from '@kiln/mcp';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { FastifyRequest } from 'fastify';
import { authenticate } from '../../services/auth.js';
import type { Principal } from '../../services/context.js';
import type { ServiceHosting } from '../../services/hosted-services/hosting.js';
import type { KilnApp } from '../app.js';

export const MCP_PATH = '/mcp';
/** MCP calls in flight at once per key: each holds API work open, so one key cannot take the endpoint. */
export const MCP_MAX_IN_FLIGHT_PER_KEY = 8;

/**
 * The control plane's MCP endpoint (Streamable HTTP, stateless: every POST is a whole exchange, so any
 * replica answers any call). The kiln key is the bearer; the tools are `@kiln/mcp`'s, shared with
 * `kiln mcp`, and call this control plane's own HTTP API with the caller's key, so every role, quota,
 * rate limit, audit event and other-tenant 404 is exactly the API's.
 */
export function installMcpEndpoint(app: KilnApp, version: string, hosting: ServiceHosting): void {
  const inFlight = new Map<string, number>();
  const calls = new CallsInFlight();

  app.route({
    method: 'POST',
    url: MCP_PATH,
    // A run_code call carries a job's code and files: the job route's limit, not the app's.
    bodyLimit: JOB_BODY_LIMIT_BYTES,
    handler: async (request, reply) => {
      const principal = await authenticate(app.kiln.deps, app.kiln.secrets, request.headers.authorization);
      request.kilnPrincipal = principal;
      if (principal.kind === 'runner' || principal.kind === 'runner_join') {
        throw new KilnError('FORBIDDEN', 'runner tokens and credentials open only /v1/runner/*; use a tenant or agent key for MCP');
      }
      const holder = holderOf(principal);
      const messages = jsonRpcMessages(request.body);
      // A batch is as many calls as it holds requests: it cannot carry more than the cap allows.
      const weight = Math.max(1, messages.filter(isRequest).length);
      const count = inFlight.get(holder) ?? 0;
      if (count + weight > MCP_MAX_IN_FLIGHT_PER_KEY) {
        reply.header('retry-after', '1');
        throw new KilnError(
          'RATE_LIMITED',
          `this key has ${count} MCP calls in flight and may have ${MCP_MAX_IN_FLIGHT_PER_KEY}; this request adds ${weight}: wait for one to end`,
          { extra: { reason: 'mcp_in_flight', retry_after: 1 } },
        );
      }
      inFlight.set(holder, count + weight);
      const release = once(() => {
        const left = (inFlight.get(holder) ?? weight) - weight;
        if (left <= 0) inFlight.delete(holder);
        else inFlight.set(holder, left);
      });

      const server = createKilnMcpServer({ client: { url: selfUrl(app), apiKey: bearerOf(request) }, publicUrl: hosting.publicUrl, version });
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      const conversation = conversationOf(request);
      // A cancellation arrives as a POST of its own: it closes the server answering the call it names,
      // which aborts the tool (run_code then cancels its job).
      for (const m of messages) if (m.method === 'notifications/cancelled') calls.cancel(holder, conversation, m.params?.requestId);
      const tracked = messages.filter(isRequest).map((m) => calls.track(holder, conversation, m.id, () => void server.close()));
      if (messages.some((m) => m.method === 'initialize')) reply.raw.setHeader('mcp-session-id', newConversationId());
      // From here the transport writes the answer (JSON, or an event stream with progress notifications).
      reply.hijack();
      reply.raw.once('close', () => {
        release();
        for (const untrack of tracked) untrack();
        void transport.close();
        void server.close();
      });
      try {
        await server.connect(transport);
        await transport.handleRequest(request.raw, reply.raw, request.body);
      } catch (err) {
        request.log.error({ err }, 'MCP request failed');
        if (!reply.raw.headersSent) reply.raw.writeHead(500, { 'content-type': 'application/json' });
        reply.raw.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null }));
      }
    },
  });

  // Stateless: no server-initiated stream to open (GET) and no MCP session to end (DELETE).
  app.route({
    method: ['GET', 'DELETE', 'PUT', 'PATCH', 'OPTIONS'],
    url: MCP_PATH,
    handler: async (request, reply) => {
      reply.header('allow', 'POST');
      throw new KilnError('METHOD_NOT_ALLOWED', `${request.method} is not served on ${MCP_PATH}: this MCP endpoint is stateless; POST each JSON-RPC message`);
    },
  });
}

interface JsonRpcMessage {
  id?: string | number;
  method?: string;
  params?: { requestId?: string | number };
}

const isRequest = (m: JsonRpcMessage) => m.id !== undefined && m.method !== undefined;

function jsonRpcMessages(body: unknown): JsonRpcMessage[] {
  const list = Array.isArray(body) ? body : [body];
  return list.filter((m): m is JsonRpcMessage => typeof m === 'object' && m !== null);
}

/**
 * The endpoint keeps no MCP session, but it gives each client that initializes an opaque id
 * (`Mcp-Session-Id`, which clients send back) so that a cancellation names that client's call, not
 * another's with the same request id under the same key.
 */
const newConversationId = () => randomBytes(16).toString('hex');

function conversationOf(request: FastifyRequest): string {
  const header = request.headers['mcp-session-id'];
  return typeof header === 'string' && /^[0-9a-f]{32}$/.test(header) ? header : '';
}

/** The tool calls this replica is answering, by key, conversation and JSON-RPC id, so they can be cancelled. */
class CallsInFlight {
  private readonly calls = new Map<string, Set<() => void>>();

  track(holder: string, conversation: string, id: string | number | undefined, cancel: () => void): () => void {
    const key = this.key(holder, conversation, id);
    const set = this.calls.get(key) ?? new Set();
    set.add(cancel);
    this.calls.set(key, set);
    return () => {
      set.delete(cancel);
      if (set.size === 0 && this.calls.get(key) === set) this.calls.delete(key);
    };
  }

  cancel(holder: string, conversation: string, id: string | number | undefined): void {
    if (id === undefined) return;
    for (const cancel of this.calls.get(this.key(holder, conversation, id)) ?? []) cancel();
  }

  private key(holder: string, conversation: string, id: string | number | undefined): string {
    return `${holder}\u0000${conversation}\u0000${JSON.stringify(id ?? null)}`;
  }
}

function holderOf(principal: Principal): string {
  return principal.kind === 'tenant' || principal.kind === 'agent' ? principal.keyId : principal.kind;
}

function bearerOf(request: FastifyRequest): string {
  return /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '')![1]!;
}

/** This control plane's own address, as its tools reach its API (loopback when it listens on every address). */
function selfUrl(app: KilnApp): string {
  const address = app.server.address() as AddressInfo | null;
  if (!address || typeof address !== 'object') throw new KilnError('INTERNAL', 'the control plane is not listening');
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
