import type { ServiceToken, Session, SessionStep } from '@kiln/core';
import { KilnClient, type KilnClientOptions } from './client.js';
import { KilnApiError, NotFoundError } from './errors.js';
import { parseEventStream } from './sse.js';

/**
 * A kiln session in the shape E2B users know (`Sandbox.create`, `sandbox.commands.run`,
 * `sandbox.files.write`): a persistent sandbox that lives across calls until killed or expired.
 */

export interface SandboxOptions extends KilnClientOptions {
  /** How long the sandbox lives without a keepalive, in ms (rounded up to seconds). @default the policy's maximum */
  timeoutMs?: number;
  envs?: Record<string, string>;
  metadata?: Record<string, string>;
  policyId?: string;
  zone?: string;
  /** For tenant keys: the agent the sandbox belongs to. */
  agentId?: string;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** the step's sequence in the session */
  sequence: number;
  step: SessionStep;
}

/** A command that ended with a non-zero exit (or a signal): `run` throws it, with the output. */
export class CommandExitError extends KilnApiError {
  override name = 'CommandExitError';
  constructor(readonly result: CommandResult) {
    super(200, 'COMMAND_EXIT', `the command exited with ${result.exitCode} (${result.step.verdict})`);
  }
  get exitCode(): number {
    return this.result.exitCode;
  }
  get stdout(): string {
    return this.result.stdout;
  }
  get stderr(): string {
    return this.result.stderr;
  }
}

export interface CommandRunOptions {
  background?: boolean;
  cwd?: string;
  envs?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
}

/** A background command: wait for it, kill it, feed its stdin. */
export class CommandHandle {
  constructor(
    private readonly sandbox: Sandbox,
    readonly sequence: number,
    private readonly watching?: Promise<SessionStep>,
  ) {}

  /** Resolves with the result when the command ends; throws CommandExitError on a non-zero exit. */
  async wait(): Promise<CommandResult> {
    const step = this.watching ? await this.watching : await this.sandbox.commands.waitFor(this.sequence);
    return resultOf(await withWholeOutput(this.sandbox, step));
  }

  async kill(): Promise<void> {
    await this.sandbox.client.request('POST', `${this.sandbox.path}/steps/${this.sequence}/kill`, { body: {} });
  }

  async sendStdin(data: string, options: { eof?: boolean } = {}): Promise<void> {
    await this.sandbox.client.request('POST', `${this.sandbox.path}/steps/${this.sequence}/stdin`, {
      body: { data, eof: options.eof ?? false },
    });
  }
}

/** Bytes of each stream a step keeps inline (the server's INLINE_OUTPUT_MAX_BYTES); the rest is in its artifacts. */
const INLINE_OUTPUT_BYTES = 64 * 1024;

/**
 * The step with its whole stdout and stderr: output cut at the inline limit is read from the step's
 * stdout/stderr artifacts (E2B's `run` answers the whole output too).
 */
async function withWholeOutput(sandbox: Sandbox, step: SessionStep): Promise<SessionStep> {
  const whole = { ...step };
  for (const name of ['stdout', 'stderr'] as const) {
    const id = step.output_refs?.[name];
    // A cut may end inside a UTF-8 character, which then reads as U+FFFD: within 3 bytes of the limit.
    if (!id || new TextEncoder().encode(step[name] ?? '').length < INLINE_OUTPUT_BYTES - 3) continue;
    const res = await sandbox.client.requestRaw('GET', `/v1/artifacts/${encodeURIComponent(id)}/content`, { accept: 'application/octet-stream', timeoutMs: null });
    whole[name] = await res.text();
  }
  return whole;
}

function resultOf(step: SessionStep): CommandResult {
  const exitCode = step.exit_status?.code ?? (step.exit_status?.signal ? 128 : -1);
  const result = { exitCode, stdout: step.stdout ?? '', stderr: step.stderr ?? '', sequence: step.sequence, step };
  if (step.status !== 'succeeded') throw new CommandExitError(result);
  return result;
}

export interface EntryInfo {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size_bytes: number;
  mode: number;
  modified_at: string;
  /** the path relative to /workspace */
  path: string;
}

export class Sandbox {
  readonly commands: Commands;
  readonly files: Files;

  private constructor(
    readonly client: KilnClient,
    private info: Session,
  ) {
    this.commands = new Commands(this);
    this.files = new Files(this);
  }

  get sandboxId(): string {
    return this.info.id;
  }

  /** @internal the session's API path */
  get path(): string {
    return `/v1/sessions/${encodeURIComponent(this.info.id)}`;
  }

  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const client = new KilnClient(options);
    const session = await client.request<Session>('POST', '/v1/sessions', {
      body: {
        ...(options.timeoutMs !== undefined ? { ttl_seconds: Math.ceil(options.timeoutMs / 1000) } : {}),
        ...(options.envs ? { env: options.envs } : {}),
        ...(options.metadata ? { metadata: options.metadata } : {}),
        ...(options.policyId ? { policy_id: options.policyId } : {}),
        ...(options.zone ? { zone: options.zone } : {}),
        ...(options.agentId ? { agent_id: options.agentId } : {}),
      },
      timeoutMs: 60_000,
    });
    return new Sandbox(client, session);
  }

  static async connect(sandboxId: string, options: KilnClientOptions = {}): Promise<Sandbox> {
    const client = new KilnClient(options);
    return new Sandbox(client, await client.request<Session>('GET', `/v1/sessions/${encodeURIComponent(sandboxId)}`));
  }

  static async list(options: KilnClientOptions & { status?: 'active' | 'expired' | 'terminated'; limit?: number } = {}): Promise<Session[]> {
    const client = new KilnClient(options);
    const page = await client.request<{ items: Session[] }>('GET', '/v1/sessions', {
      query: { status: options.status ?? 'active', limit: options.limit ?? 100 },
    });
    return page.items;
  }

  /** E2B's setTimeout: the sandbox now lives `timeoutMs` from now (never past the policy's maximum). */
  async setTimeout(timeoutMs: number): Promise<void> {
    this.info = await this.client.request<Session>('POST', `${this.path}/keepalive`, { body: { ttl_seconds: Math.ceil(timeoutMs / 1000) } });
  }

  async getInfo(): Promise<Session> {
    this.info = await this.client.request<Session>('GET', this.path);
    return this.info;
  }

  async isRunning(): Promise<boolean> {
    return (await this.getInfo()).status === 'active';
  }

  /**
   * E2B's getHost: where a server this sandbox listens on at `port` is reached, through the control
   * plane's proxy (`{url}/v1/sessions/{id}/ports/{port}/proxy/`, opened with this client's key or a
   * token from `getPortToken`). Returns the host and path, without the scheme, as E2B does.
   */
  getHost(port: number): string {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new RangeError('port must be an integer in 1..65535');
    const base = new URL(this.client.url);
    return `${base.host}${base.pathname.replace(/\/+$/, '')}${this.path}/ports/${port}/proxy`;
  }

  /** A token that opens this sandbox's `port` alone (for a browser: open its `url`). */
  async getPortToken(port: number, options: { ttlSeconds?: number } = {}): Promise<ServiceToken> {
    return this.client.request<ServiceToken>('POST', `${this.path}/ports/${port}/tokens`, {
      body: options.ttlSeconds !== undefined ? { ttl_seconds: options.ttlSeconds } : {},
    });
  }

  /** Ends the sandbox (idempotent). */
  async kill(): Promise<void> {
    this.info = await this.client.request<Session>('DELETE', this.path);
  }
}

class Commands {
  constructor(private readonly sandbox: Sandbox) {}

  /** Runs a command (a string runs under /bin/sh -c). Non-zero exit: CommandExitError. */
  run(cmd: string | string[], options: CommandRunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: string | string[], options?: CommandRunOptions): Promise<CommandResult>;
  async run(cmd: string | string[], options: CommandRunOptions = {}): Promise<CommandResult | CommandHandle> {
    const streaming = options.onStdout !== undefined || options.onStderr !== undefined;
    const body = {
      command: cmd,
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      ...(options.envs ? { env: options.envs } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.timeoutMs ? { timeout_ms: options.timeoutMs } : {}),
      background: options.background === true || streaming,
    };
    const step = await this.sandbox.client.request<SessionStep>('POST', `${this.sandbox.path}/steps`, {
      body,
      timeoutMs: (options.timeoutMs ?? 60_000) + 65_000,
    });
    // Streaming runs the step in the background to follow it; a foreground command gets end of file
    // after its `stdin`, as it would have without callbacks.
    if (streaming && !options.background && step.status === 'running') {
      await this.sandbox.client.request('POST', `${this.sandbox.path}/steps/${step.sequence}/stdin`, { body: { eof: true } }).catch(() => {});
    }
    const watching = streaming ? this.follow(step.sequence, options) : undefined;
    if (options.background) return new CommandHandle(this.sandbox, step.sequence, watching);
    const ended = watching ? await watching : step.status === 'running' ? await this.waitFor(step.sequence) : step;
    return resultOf(await withWholeOutput(this.sandbox, ended));
  }

  /** Follows a step's events, handing output to the callbacks; resolves with the ended step. */
  private async follow(sequence: number, options: CommandRunOptions): Promise<SessionStep> {
    const res = await this.sandbox.client.requestRaw('GET', `${this.sandbox.path}/steps/${sequence}/events`, {
      accept: 'text/event-stream',
      timeoutMs: null,
    });
    for await (const sse of parseEventStream(res.body as ReadableStream<Uint8Array>)) {
      if (sse.event === 'output') {
        const chunk = JSON.parse(sse.data) as { stream: 'stdout' | 'stderr'; data: string };
        (chunk.stream === 'stdout' ? options.onStdout : options.onStderr)?.(chunk.data);
      } else if (sse.event === 'end') return JSON.parse(sse.data) as SessionStep;
    }
    return this.waitFor(sequence);
  }

  /** @internal polls a step until it ends */
  async waitFor(sequence: number): Promise<SessionStep> {
    for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
      const step = await this.sandbox.client.request<SessionStep>('GET', `${this.sandbox.path}/steps/${sequence}`);
      if (step.status !== 'queued' && step.status !== 'running') return step;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

/** What a file can be written from; only web APIs are used, so the SDK runs where `fetch` does. */
export type FileData = string | Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

function uploadBody(data: FileData): NonNullable<RequestInit['body']> {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (typeof (data as ReadableStream<Uint8Array>).getReader === 'function') return data as ReadableStream<Uint8Array>;
  const chunks = (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await chunks.return?.();
    },
  });
}

const pathQuery = (path: string) => ({ path: path.replace(/^\/workspace\/?/, '') });

class Files {
  constructor(private readonly sandbox: Sandbox) {}

  /**
   * Reads a file as text, bytes, or a stream of bytes (large files: `{ format: 'stream' }`, a web
   * ReadableStream: iterate it with `for await`, or `Readable.fromWeb()` it in Node).
   */
  read(path: string): Promise<string>;
  read(path: string, options: { format: 'bytes' }): Promise<Uint8Array>;
  read(path: string, options: { format: 'stream' }): Promise<ReadableStream<Uint8Array>>;
  async read(path: string, options: { format?: 'text' | 'bytes' | 'stream' } = {}): Promise<string | Uint8Array | ReadableStream<Uint8Array>> {
    const res = await this.sandbox.client.requestRaw('GET', `${this.sandbox.path}/files`, { query: pathQuery(path), timeoutMs: null });
    if (options.format === 'stream') return res.body as ReadableStream<Uint8Array>;
    const bytes = new Uint8Array(await res.arrayBuffer());
    return options.format === 'bytes' ? bytes : new TextDecoder().decode(bytes);
  }

  /**
   * Writes a file from text, bytes, a web stream or any async iterable of bytes (a Node Readable is
   * one): streamed through, never gathered whole.
   */
  async write(path: string, data: FileData): Promise<{ path: string; size_bytes: number }> {
    const res = await this.sandbox.client.requestRaw('PUT', `${this.sandbox.path}/files`, { query: pathQuery(path), rawBody: uploadBody(data), timeoutMs: null });
    return (await res.json()) as { path: string; size_bytes: number };
  }

  async list(path = ''): Promise<EntryInfo[]> {
    const q = pathQuery(path);
    const answer = await this.sandbox.client.request<{ items: Omit<EntryInfo, 'path'>[] }>('GET', `${this.sandbox.path}/files/list`, { query: q });
    return answer.items.map((e) => ({ ...e, path: q.path ? `${q.path.replace(/\/$/, '')}/${e.name}` : e.name }));
  }

  async exists(path: string): Promise<boolean> {
    const q = pathQuery(path);
    const slash = q.path.lastIndexOf('/');
    try {
      const entries = await this.list(slash < 0 ? '' : q.path.slice(0, slash));
      return entries.some((e) => e.name === q.path.slice(slash + 1));
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  async remove(path: string): Promise<void> {
    await this.sandbox.client.request('DELETE', `${this.sandbox.path}/files`, { query: pathQuery(path) });
  }

  async makeDir(path: string): Promise<void> {
    await this.sandbox.client.request('POST', `${this.sandbox.path}/files/mkdir`, { body: pathQuery(path) });
  }

  async rename(oldPath: string, newPath: string): Promise<void> {
    await this.sandbox.client.request('POST', `${this.sandbox.path}/files/rename`, {
      body: { from: pathQuery(oldPath).path, to: pathQuery(newPath).path },
    });
  }
}
