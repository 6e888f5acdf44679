import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  artifactRulesSchema,
  DEFAULT_RULESET,
  KilnError,
  leasedCollectGlobSchema,
  limitsSchema,
  networkRulesSchema,
  NonceCache,
  SIGNATURE_HEADERS,
  sha256Hex,
  UNSIGNED_BODY,
  verifyPlaneRequest,
  type EgressSummary,
  type Limits,
} from '@kiln/core';
import { z } from 'zod';
import type { Duplex } from 'node:stream';
import { boundRejected, selectArtifacts } from '../agent/artifact-selection.js';
import type { SandboxDriver, StdinWriter } from '../sandbox/driver.js';
import type { PersistentSandbox } from '../sandbox/persistent/index.js';
import { formatBytes, hostRefusal, type HostCapacity, type MemoryLedger } from '../agent/host-capacity.js';
import { forwardHttp, forwardUpgrade } from '../services/forward.js';
import type { ServiceHost } from '../services/service-host.js';
import { startSessionSandbox } from './session-sandbox.js';
import { WorkspaceFiles } from './workspace-files.js';
import { jobStdinBody, type JobStdinHost } from '../job-stdin/job-stdin-host.js';

/** The largest JSON body the host reads (a session's seed files included). */
const MAX_JSON_BODY_BYTES = 8 * 1024 * 1024;
const idPattern = /^[A-Za-z0-9_-]{1,128}$/;

const startBody = z.strictObject({
  session_id: z.string().regex(idPattern),
  limits: limitsSchema,
  /** The session policy's egress rules; `none` when an older control plane sends none. */
  network: networkRulesSchema.default({ egress: 'none', allow: [] }),
  env: z.record(z.string(), z.string()).default({}),
  files: z.array(z.strictObject({ path: z.string().max(1024), content: z.string(), mode: z.number().int().optional() })).default([]),
});

const stepBody = z.strictObject({
  sequence: z.number().int().min(1),
  command: z.union([z.string().min(1), z.array(z.string()).min(1)]),
  stdin: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().max(4096).optional(),
  timeout_ms: z.number().int().min(1).optional(),
  /** keep stdin open after `stdin`, for POST …/steps/{sequence}/stdin */
  stdin_open: z.boolean().default(false),
  /** files kept once the step ends (the control plane checked the globs against COLLECT_LIMITS) */
  collect: z.array(leasedCollectGlobSchema).max(32).default([]),
  /** the session's policy's artifact rules, applied to what `collect` finds */
  artifacts: artifactRulesSchema.optional(),
});

/** Refused files a step's answer names one by one; the rest are summed up in one entry. */
const REJECTED_NAMED_MAX = 100;

const stdinBody = z.strictObject({ data: z.string().max(1024 * 1024).default(''), eof: z.boolean().default(false) });

interface HostedSession {
  sandbox: PersistentSandbox;
  /** what this session holds of the node's memory budget (its sandbox's memory limit) */
  memoryBytes: number;
  /** running steps by sequence, to kill them, feed their stdin and watch their output */
  running: Map<number, RunningStep>;
}

interface RunningStep {
  abort: AbortController;
  stdin?: StdinWriter;
  output: StepOutputFeed;
}

/** Output a running step keeps for watchers that join late (per step): past it they get `truncated`. */
const FEED_HISTORY_MAX_BYTES = 1024 * 1024;
/** What a watcher of a running step may leave unread before it is cut. */
const WATCHER_BUFFER_MAX_BYTES = 4 * 1024 * 1024;

/**
 * A running step's output for watchers on any control-plane replica (the replica that submitted the step
 * reads it from the step's own answer; the others come here): what came so far, bounded, then the rest.
 */
class StepOutputFeed extends EventEmitter {
  readonly history: { type: 'stdout' | 'stderr'; data: string }[] = [];
  private historyBytes = 0;
  historyCut = false;

  push(type: 'stdout' | 'stderr', chunk: Buffer): void {
    const event = { type, data: chunk.toString('base64') };
    if (this.historyBytes + chunk.length > FEED_HISTORY_MAX_BYTES) this.historyCut = true;
    else {
      this.history.push(event);
      this.historyBytes += chunk.length;
    }
    this.emit('output', event);
  }
}

export interface SessionHostOptions {
  driver: SandboxDriver;
  /** What this node can honour: a session asking for more is refused, never clamped. */
  host?: HostCapacity;
  /** The node's memory ledger, shared with jobs: a session holds its memory limit until it ends. */
  memory?: MemoryLedger;
  /** The current signing key (from the runner's credential); undefined before registration. */
  signingKey: () => string | undefined;
  /** `host:port` to listen on. @default "127.0.0.1:0" */
  listen?: string;
  nowMs?: () => number;
  /** Services on the same signed endpoint (`/v1/services…`, issue 9). */
  services?: ServiceHost;
  /** Jobs' open stdin on the same signed endpoint (`POST /v1/jobs/{id}/stdin`). */
  jobStdin?: JobStdinHost;
}

/** `/v1/services/{id}/proxy…` and `/v1/sessions/{id}/ports/{port}/proxy…`: proxied traffic. */
const PROXY_PATH = /^\/v1\/(?:services\/([A-Za-z0-9_-]{1,128})|sessions\/([A-Za-z0-9_-]{1,128})\/ports\/([0-9]{1,5}))\/proxy(?=$|[/?])/;

/**
 * The runner's endpoint for interactive traffic (ARCHITECTURE.md §7): the control plane starts, drives
 * and destroys session sandboxes here. Every request must carry the control plane's signature (fresh,
 * never seen before); anything else is refused with 401 before it is read further.
 */
export class SessionHost {
  private readonly sessions = new Map<string, HostedSession>();
  private readonly nonces = new NonceCache();
  private server: http.Server | undefined;
  private readonly nowMs: () => number;

  constructor(private readonly options: SessionHostOptions) {
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** Listens; resolves to the URL to register as the runner's address. */
  async start(): Promise<string> {
    const [host, port] = splitListen(this.options.listen ?? '127.0.0.1:0');
    const server = http.createServer((req, res) => {
      void this.handle(req, res).catch((err: unknown) => answerError(res, err));
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.upgrade(req, socket, head).catch((err: unknown) => {
        const known = err instanceof KilnError ? err : new KilnError('INTERNAL', (err as Error).message);
        socket.end(`HTTP/1.1 ${known.status} ${known.code}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address() as AddressInfo;
    return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  }

  /** Stops listening. Sandboxes are left to the driver's drain (the runner is going away). */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await Promise.allSettled([...this.sessions.keys()].map((id) => this.destroySession(id)));
    await this.options.services?.stop();
  }

  /** Session ids with a live sandbox here. */
  liveSessionIds(): string[] {
    return [...this.sessions.entries()].filter(([, s]) => s.sandbox.alive).map(([id]) => id);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const key = this.options.signingKey();
    const pathWithQuery = req.url ?? '/';
    const method = req.method ?? 'GET';
    if (!key) throw new KilnError('UNAVAILABLE', 'this runner is not registered yet');
    const check = verifyPlaneRequest(key, { method, pathWithQuery, headers: req.headers }, this.nonces, this.nowMs());
    if (!check.ok) throw new KilnError('UNAUTHORIZED', `refused: ${check.reason}`);
    const url = new URL(pathWithQuery, 'http://runner');
    const parts = url.pathname.split('/').filter(Boolean);
    const proxied = PROXY_PATH.exec(pathWithQuery);
    if (proxied) {
      // Proxied bodies stream through unhashed: the path, method, time and nonce are what is signed.
      if (req.headers[SIGNATURE_HEADERS.bodySha256] !== UNSIGNED_BODY) throw new KilnError('UNAUTHORIZED', 'refused: proxied traffic is signed as streamed');
      return this.proxy(proxied, pathWithQuery, req, res);
    }
    // A file upload streams through unhashed (its path, method, time and nonce are signed; its size is
    // bounded by the workspace); every other body must be the one signed.
    const streamedUpload = method === 'PUT' && parts.length === 4 && parts[3] === 'files';
    if (streamedUpload) {
      if (req.headers[SIGNATURE_HEADERS.bodySha256] !== UNSIGNED_BODY) throw new KilnError('UNAUTHORIZED', 'refused: an upload is signed as streamed');
      return this.upload(parts[2]!, url, req, res);
    }
    const body = method === 'GET' || method === 'DELETE' ? Buffer.alloc(0) : await readBounded(req, MAX_JSON_BODY_BYTES);
    if (sha256Hex(body) !== req.headers[SIGNATURE_HEADERS.bodySha256]) {
      throw new KilnError('UNAUTHORIZED', 'refused: the body is not the one signed');
    }
    if (parts[0] === 'v1' && parts[1] === 'services' && this.options.services) return this.options.services.handle(parts, url, method, body, res);
    if (parts[0] === 'v1' && parts[1] === 'jobs' && parts.length === 4 && parts[3] === 'stdin' && method === 'POST' && this.options.jobStdin) {
      if (!idPattern.test(parts[2]!)) throw new KilnError('NOT_FOUND', 'no such job');
      return json(res, 200, await this.options.jobStdin.write(parts[2]!, parseJson(jobStdinBody, body)));
    }
    // /v1/sessions[/:id[/steps[/:seq/kill]]]
    if (parts[0] !== 'v1' || parts[1] !== 'sessions') throw new KilnError('NOT_FOUND', 'no such route');
    const id = parts[2];
    if (id !== undefined && !idPattern.test(id)) throw new KilnError('NOT_FOUND', 'no such session');
    if (parts.length === 2 && method === 'GET') return json(res, 200, { session_ids: this.liveSessionIds() });
    if (parts.length === 2 && method === 'POST') return json(res, 201, await this.startSession(parseJson(startBody, body)));
    if (parts.length === 3 && id && method === 'DELETE') {
      const egress = await this.destroySession(id);
      return json(res, 200, { destroyed: true, egress: egress ?? null });
    }
    if (parts.length === 3 && id && method === 'GET') {
      const s = this.sessions.get(id);
      if (!s || !s.sandbox.alive) throw new KilnError('NOT_FOUND', `no live sandbox for session ${id}`);
      return json(res, 200, { session_id: id, sandbox_id: s.sandbox.id });
    }
    if (parts.length === 4 && id && parts[3] === 'steps' && method === 'POST') {
      return this.runStep(id, parseJson(stepBody, body), res);
    }
    if (id && parts[3] === 'files') return this.fileCall(id, parts.slice(4), method, url, body, res);
    if (parts.length === 5 && id && parts[3] === 'steps' && method === 'GET') {
      // Whether a step runs here: the control plane's check for steps whose driving replica died.
      return json(res, 200, { running: this.sessions.get(id)?.running.has(Number(parts[4])) === true });
    }
    if (parts.length === 6 && id && parts[3] === 'steps' && parts[5] === 'events' && method === 'GET') {
      return this.watchStep(id, Number(parts[4]), res);
    }
    if (parts.length === 6 && id && parts[3] === 'steps' && parts[5] === 'kill' && method === 'POST') {
      const running = this.sessions.get(id)?.running.get(Number(parts[4]));
      running?.abort.abort();
      return json(res, 200, { killed: running !== undefined });
    }
    if (parts.length === 6 && id && parts[3] === 'steps' && parts[5] === 'stdin' && method === 'POST') {
      const input = parseJson(stdinBody, body);
      const running = this.sessions.get(id)?.running.get(Number(parts[4]));
      if (!running) throw new KilnError('CONFLICT', `step ${parts[4]} is not running`);
      if (!running.stdin) throw new KilnError('CONFLICT', `step ${parts[4]} took its stdin at submission; start it with background to write more`);
      if (input.data) running.stdin.write(Buffer.from(input.data));
      if (input.eof) running.stdin.end();
      return json(res, 200, { written: Buffer.byteLength(input.data) });
    }
    throw new KilnError('NOT_FOUND', 'no such route');
  }

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const key = this.options.signingKey();
    const pathWithQuery = req.url ?? '/';
    if (!key) throw new KilnError('UNAVAILABLE', 'this runner is not registered yet');
    const check = verifyPlaneRequest(key, { method: req.method ?? 'GET', pathWithQuery, headers: req.headers }, this.nonces, this.nowMs());
    if (!check.ok) throw new KilnError('UNAUTHORIZED', `refused: ${check.reason}`);
    const proxied = PROXY_PATH.exec(pathWithQuery);
    if (!proxied) throw new KilnError('NOT_FOUND', 'no such route');
    const rest = upstreamPath(pathWithQuery, proxied[0].length);
    if (proxied[1]) return this.options.services?.proxyUpgrade(proxied[1], rest, req, socket, head);
    forwardUpgrade(req, socket, head, await this.sessionPort(proxied[2]!, Number(proxied[3])), rest);
  }

  /** Proxied traffic to a service, or to a port a session's sandbox listens on. */
  private async proxy(match: RegExpExecArray, pathWithQuery: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rest = upstreamPath(pathWithQuery, match[0].length);
    if (match[1]) {
      if (!this.options.services) throw new KilnError('NOT_FOUND', 'this runner hosts no services');
      return this.options.services.proxy(match[1], rest, req, res);
    }
    forwardHttp(req, res, await this.sessionPort(match[2]!, Number(match[3])), rest);
  }

  private async sessionPort(id: string, port: number): Promise<string> {
    const s = this.sessions.get(id);
    if (!s || !s.sandbox.alive) throw new KilnError('NOT_FOUND', `no live sandbox for session ${id}`);
    return s.sandbox.exposePort(port);
  }

  private files(id: string): WorkspaceFiles {
    const s = this.sessions.get(id);
    if (!s || !s.sandbox.alive) throw new KilnError('NOT_FOUND', `no live sandbox for session ${id}`);
    return new WorkspaceFiles(s.sandbox.workspace);
  }

  private async upload(id: string, url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!idPattern.test(id)) throw new KilnError('NOT_FOUND', 'no such session');
    const files = this.files(id);
    const size = await files.write(queryPath(url), req);
    json(res, 201, { path: queryPath(url), size_bytes: size });
  }

  private async fileCall(id: string, rest: string[], method: string, url: URL, body: Buffer, res: http.ServerResponse): Promise<void> {
    const files = this.files(id);
    const op = rest.join('/');
    if (op === '' && method === 'GET') {
      const { stream, size } = files.read(queryPath(url));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      stream.on('error', () => res.destroy());
      res.once('close', () => stream.destroy());
      stream.pipe(res);
      return;
    }
    if (op === '' && method === 'DELETE') {
      files.remove(queryPath(url));
      return json(res, 200, { removed: true });
    }
    if (op === 'list' && method === 'GET') return json(res, 200, { items: files.list(url.searchParams.get('path') ?? '') });
    if (op === 'mkdir' && method === 'POST') {
      files.mkdir(parseJson(z.strictObject({ path: z.string().min(1).max(4096) }), body).path);
      return json(res, 201, { created: true });
    }
    if (op === 'rename' && method === 'POST') {
      const r = parseJson(z.strictObject({ from: z.string().min(1).max(4096), to: z.string().min(1).max(4096) }), body);
      files.rename(r.from, r.to);
      return json(res, 200, { renamed: true });
    }
    throw new KilnError('NOT_FOUND', 'no such route');
  }

  private async startSession(input: z.infer<typeof startBody>): Promise<{ sandbox_id: string }> {
    const existing = this.sessions.get(input.session_id);
    // Idempotent: a retried start (the answer was lost) gets the sandbox already made.
    if (existing?.sandbox.alive) return { sandbox_id: existing.sandbox.id };
    if (existing) await this.destroySession(input.session_id);
    const limits = input.limits as Limits;
    const refusal = this.options.host ? hostRefusal(limits, this.options.host) : undefined;
    if (refusal !== undefined) throw noRoom(refusal);
    // Refused rather than queued: the control plane places the session on another runner, or says so.
    const memoryBytes = limits.memory_bytes;
    if (this.options.memory && !this.options.memory.tryReserve(memoryBytes)) {
      throw noRoom(
        `this runner's memory budget has ${formatBytes(Math.max(0, this.options.memory.availableBytes))} free, ` +
          `less than the session's limits.memory_bytes of ${formatBytes(memoryBytes)}`,
      );
    }
    let sandbox: PersistentSandbox;
    try {
      sandbox = await startSessionSandbox(this.options.driver, {
        limits,
        // The policy's egress: an allowlist session gets its relay and proxy variables from the driver.
        network: { ...input.network, owner: { session_id: input.session_id } },
        env: input.env,
        files: input.files.map((f) => ({ path: f.path, content: Buffer.from(f.content, 'base64'), ...(f.mode !== undefined ? { mode: f.mode } : {}) })),
      });
    } catch (err) {
      this.options.memory?.release(memoryBytes);
      throw err;
    }
    this.sessions.set(input.session_id, { sandbox, memoryBytes: this.options.memory ? memoryBytes : 0, running: new Map() });
    return { sandbox_id: sandbox.id };
  }

  /** Destroys the session's sandbox; answers what it did through the egress proxy (allowlist only). */
  private async destroySession(id: string): Promise<EgressSummary | undefined> {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    for (const step of s.running.values()) step.abort.abort();
    this.sessions.delete(id);
    try {
      await s.sandbox.destroy();
    } finally {
      if (s.memoryBytes > 0) this.options.memory?.release(s.memoryBytes);
    }
    return s.sandbox.egressSummary;
  }

  /**
   * The files a step named in `collect`, found with the same bounded walk as a job's (collect.ts: no link
   * followed, entries, depth, time and matching bounded) and the policy's artifact rules, each sent as one
   * `artifact` line. A walk a bound stopped keeps what it found and says why.
   */
  private async collectStep(
    s: HostedSession,
    step: z.infer<typeof stepBody>,
    line: (value: unknown) => void,
  ): Promise<{ rejected: { name: string; size_bytes: number; reason: string }[]; stopped?: string }> {
    if (step.collect.length === 0 || !s.sandbox.alive) return { rejected: [] };
    const rules = step.artifacts ?? DEFAULT_RULESET.artifacts;
    // The walk's own bounds (16 MiB a file, 64 MiB in all…) hold what is read; the rules name what is refused.
    const outcome = await s.sandbox.workspace.collect(step.collect);
    const selection = selectArtifacts(outcome.files, rules);
    for (const file of selection.accepted) {
      line({ type: 'artifact', name: file.path, size_bytes: file.size_bytes, data: file.content.toString('base64') } satisfies StepArtifactLine);
    }
    return {
      rejected: boundRejected(selection.rejected, REJECTED_NAMED_MAX),
      ...(outcome.stopped !== undefined ? { stopped: outcome.stopped } : {}),
    };
  }

  /**
   * A running step's output as NDJSON (base64 chunks as in the step's own answer, `truncated` where the
   * history was cut, `end` when it ends): 404 once it is not running here, so the caller reads the
   * persisted step instead.
   */
  private watchStep(id: string, sequence: number, res: http.ServerResponse): void {
    const running = this.sessions.get(id)?.running.get(sequence);
    if (!running) throw new KilnError('NOT_FOUND', `step ${sequence} is not running here`);
    const feed = running.output;
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const line = (value: unknown) => {
      if (res.destroyed) return;
      // A watcher that does not read is cut, not buffered for: the step's own answer never waits on it.
      if (res.writableLength > WATCHER_BUFFER_MAX_BYTES) res.destroy();
      else res.write(`${JSON.stringify(value)}\n`);
    };
    for (const e of feed.history) line(e);
    if (feed.historyCut) line({ type: 'truncated', reason: 'history_limit' });
    const onOutput = (e: unknown) => line(e);
    const onEnd = () => {
      line({ type: 'end' });
      done();
    };
    const done = () => {
      feed.off('output', onOutput);
      feed.off('end', onEnd);
      res.end();
    };
    feed.on('output', onOutput);
    feed.on('end', onEnd);
    res.once('close', done);
  }

  /** Runs a step and answers NDJSON: output chunks as they come (base64), then one `end` line. */
  private async runStep(id: string, step: z.infer<typeof stepBody>, res: http.ServerResponse): Promise<void> {
    const s = this.sessions.get(id);
    if (!s || !s.sandbox.alive) throw new KilnError('NOT_FOUND', `no live sandbox for session ${id}`);
    if (s.running.has(step.sequence)) throw new KilnError('CONFLICT', `step ${step.sequence} is already running`);
    const abort = new AbortController();
    const feed = new StepOutputFeed();
    feed.setMaxListeners(0);
    const entry: RunningStep = { abort, output: feed };
    // Input that arrives before the command's stdin is connected waits here, in order.
    const early: (Buffer | null)[] = [];
    let connected: StdinWriter | undefined;
    if (step.stdin_open) {
      entry.stdin = {
        write: (data) => {
          if (connected) return connected.write(data);
          early.push(data);
        },
        end: () => (connected ? connected.end() : early.push(null)),
      };
    }
    s.running.set(step.sequence, entry);
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    // The headers go out now: they tell the control plane the step runs (a background step answers then).
    res.flushHeaders();
    const line = (value: unknown) => {
      if (!res.destroyed) res.write(`${JSON.stringify(value)}\n`);
    };
    // The control plane hanging up (a kill, a crash) ends the step too: nothing else would ever read it.
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      const result = await s.sandbox.exec(step.command, {
        ...(step.stdin !== undefined ? { stdin: step.stdin } : {}),
        ...(step.env ? { env: step.env } : {}),
        ...(step.cwd ? { cwd: step.cwd } : {}),
        ...(step.timeout_ms ? { timeoutMs: step.timeout_ms } : {}),
        signal: abort.signal,
        ...(step.stdin_open
          ? {
              openStdin: (writer: StdinWriter) => {
                for (const item of early.splice(0)) {
                  if (item === null) writer.end();
                  else writer.write(item);
                }
                connected = writer;
              },
            }
          : {}),
        onStdout: (chunk) => {
          line({ type: 'stdout', data: chunk.toString('base64') });
          feed.push('stdout', chunk);
        },
        onStderr: (chunk) => {
          line({ type: 'stderr', data: chunk.toString('base64') });
          feed.push('stderr', chunk);
        },
      });
      const collected = await this.collectStep(s, step, line);
      line({
        type: 'end',
        verdict: result.verdict,
        exit_status: result.exit_status,
        resource_usage: result.resource_usage,
        output_truncated: result.output_truncated,
        rejected_artifacts: collected.rejected,
        ...(collected.stopped !== undefined ? { collect_stopped: collected.stopped } : {}),
      });
    } catch (err) {
      line({ type: 'error', message: (err as Error).message, code: err instanceof KilnError ? err.code : 'INTERNAL' });
    } finally {
      s.running.delete(step.sequence);
      feed.emit('end');
      res.end();
    }
  }
}

/** What follows the proxy prefix, as the upstream sees it: `/rest?query`, `/` at least. */
function upstreamPath(pathWithQuery: string, prefixLength: number): string {
  const rest = pathWithQuery.slice(prefixLength);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** One collected file in a step's answer, before its `end`: the control plane stores it as an artifact. */
export interface StepArtifactLine {
  type: 'artifact';
  name: string;
  size_bytes: number;
  /** base64 */
  data: string;
}

/** A runner without room for a session: 409 with a reason the control plane places elsewhere on. */
function noRoom(why: string): KilnError {
  return new KilnError('CONFLICT', why, { extra: { reason: 'no_session_capacity' } });
}

function queryPath(url: URL): string {
  const p = url.searchParams.get('path');
  if (!p) throw new KilnError('VALIDATION_FAILED', 'give the file as ?path=', { field: 'query.path' });
  return p;
}

function splitListen(listen: string): [string, number] {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(listen.slice(at + 1));
  if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`bad listen address ${listen}: use host:port`);
  return [host, port];
}

async function readBounded(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new KilnError('PAYLOAD_TOO_LARGE', `the body passed ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function parseJson<T extends z.ZodType>(schema: T, body: Buffer): z.infer<T> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new KilnError('VALIDATION_FAILED', 'the body is not JSON');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new KilnError('VALIDATION_FAILED', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return parsed.data;
}

export function json(res: http.ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

function answerError(res: http.ServerResponse, err: unknown): void {
  const known = err instanceof KilnError ? err : new KilnError('INTERNAL', (err as Error).message);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  json(res, known.status, {
    code: known.code,
    detail: known.message,
    ...(known.field ? { field: known.field } : {}),
    ...(typeof known.extra?.reason === 'string' ? { reason: known.extra.reason } : {}),
  });
}
