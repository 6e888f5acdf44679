import type {
  Agent,
  ApiKey,
  Artifact,
  AuditEvent,
  AuditVerifyResult,
  CreateJobInput,
  CreateServiceRequest,
  CreateWorkflowRequest,
  Job,
  LanguageOffer,
  OutputTruncatedNotice,
  Policy,
  PolicyVersion,
  RulesetInput,
  RunnerNode,
  SandboxInstance,
  Service,
  ServiceToken,
  Tenant,
  TenantQuotaOverrides,
  TenantQuotaView,
  Workflow,
  WorkflowOutputChunk,
  WorkflowStep,
} from '@kiln/core';
import { AbortError, ConnectionError, errorFromProblem, KilnApiError, networkReason, TimeoutError } from './errors.js';
import { parseEventStream } from './sse.js';

export interface KilnClientOptions {
  /** The control plane's URL. @default process.env.KILN_URL ?? "http://127.0.0.1:8080" */
  url?: string;
  /** An operator, tenant or agent key. @default process.env.KILN_API_KEY */
  apiKey?: string;
  /** Per-request timeout, except for streams and `wait`. @default 30000 */
  timeoutMs?: number;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface ListOptions {
  limit?: number;
  cursor?: string;
}

/** A chunk of a job's output as it is produced. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: string;
}

export interface RunOptions {
  /** Called once the job is submitted, before any output: the place to note its id. */
  onJob?: (job: Job) => void;
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  /**
   * Live output is incomplete (a slow reader was cut, a buffer was full, the runner lost a batch):
   * `job` is the finished job, whose `output_refs.stdout`/`stderr` artifacts hold the whole output.
   * Called once, after the end, with every notice the stream carried.
   */
  onTruncated?: (notices: OutputTruncatedNotice[], job: Job) => void;
  /**
   * Stop waiting after this long and throw a `TimeoutError` (whose `jobCanceled` says what became of
   * the job, per `onTimeout`). @default none
   */
  timeoutMs?: number;
  /** On `timeoutMs`: `'detach'` leaves the job running, `'cancel'` cancels it. @default 'detach' */
  onTimeout?: 'cancel' | 'detach';
  /** Aborting cancels the job and rejects with an `AbortError`. */
  signal?: AbortSignal;
}

/** A submitted job: follow it with `wait()`, stop it with `cancel()`. */
export interface JobHandle {
  readonly id: string;
  /** The job as the submission answered it (usually `queued`). */
  readonly job: Job;
  /** Streams the output to the callbacks given to `start` and resolves with the ended job (once; later calls share it). */
  wait(): Promise<Job>;
  /** Asks kiln to cancel the job; `wait()` then resolves with it `canceled`. */
  cancel(): Promise<Job>;
}

export interface ArtifactContent {
  /** The content: a Buffer in Node, a Uint8Array where there is no Buffer (browsers, edge runtimes). */
  bytes: Uint8Array;
  checksum: string;
}

type Query = Record<string, string | number | boolean | undefined>;

/**
 * A typed client for kiln's HTTP API, for Node 20+ and any runtime with `fetch` (browsers, edge
 * workers). Options fall back to KILN_URL and KILN_API_KEY where there is a `process.env`, then defaults.
 *
 * ```ts
 * import { KilnClient } from 'kiln-sandbox-sdk';
 * const kiln = new KilnClient({ apiKey: process.env.KILN_API_KEY });
 * const job = await kiln.jobs.run({ language: 'python', code: 'print(1)' }, { onStdout: (d) => process.stdout.write(d) });
 * console.log(job.verdict); // → ok
 * ```
 */
export class KilnClient {
  readonly url: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: KilnClientOptions = {}) {
    // No Node-only global on the client path: `process` may not exist (browsers, edge runtimes).
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
    this.url = (options.url ?? env.KILN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    this.apiKey = options.apiKey ?? env.KILN_API_KEY;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Sends one request and returns the parsed JSON answer; problem+json answers throw a KilnApiError. */
  async request<T>(method: string, path: string, options: { body?: unknown; query?: Query; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    const response = await this.fetch(method, path, options);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /**
   * A call whose answer is read as a stream (a file, server-sent events), optionally with a raw body
   * (`application/octet-stream`). Errors are thrown like `request`'s. `timeoutMs: null` waits forever.
   */
  requestRaw(
    method: string,
    path: string,
    options: { query?: Query; rawBody?: NonNullable<RequestInit['body']>; timeoutMs?: number | null; accept?: string } = {},
  ): Promise<Response> {
    return this.fetch(method, path, options);
  }

  private async fetch(
    method: string,
    path: string,
    options: { body?: unknown; rawBody?: NonNullable<RequestInit['body']>; query?: Query; timeoutMs?: number | null; accept?: string; signal?: AbortSignal },
  ): Promise<Response> {
    const url = new URL(this.url + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.rawBody !== undefined) headers['content-type'] = 'application/octet-stream';
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : options.timeoutMs;
    const signals = [...(timeoutMs !== null ? [AbortSignal.timeout(timeoutMs)] : []), ...(options.signal ? [options.signal] : [])];
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        // A stream body goes out as it is read (duplex half), never gathered first.
        ...(options.rawBody !== undefined ? { body: options.rawBody, duplex: 'half' } : {}),
        ...(signals.length > 0 ? { signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals) } : {}),
      } as RequestInit);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if ((err as Error).name === 'TimeoutError') throw new TimeoutError(`${method} ${path}: no answer from ${this.url} within ${timeoutMs} ms`);
      throw new ConnectionError(this.url, networkReason(err), err);
    }
    if (!response.ok) {
      const text = await response.text();
      let problem: Record<string, unknown> = {};
      try {
        problem = JSON.parse(text) as Record<string, unknown>;
      } catch {
        problem = { detail: text.slice(0, 500) };
      }
      throw errorFromProblem(response.status, problem, response.headers.get('retry-after'));
    }
    return response;
  }

  readonly tenants = {
    create: (body: { name: string }) => this.request<Tenant>('POST', '/v1/tenants', { body }),
    list: (o: ListOptions = {}) => this.request<Page<Tenant>>('GET', '/v1/tenants', { query: { ...o } }),
    get: (id: string) => this.request<Tenant>('GET', `/v1/tenants/${enc(id)}`),
    suspend: (id: string) => this.request<Tenant>('PATCH', `/v1/tenants/${enc(id)}`, { body: { status: 'suspended' } }),
    resume: (id: string) => this.request<Tenant>('PATCH', `/v1/tenants/${enc(id)}`, { body: { status: 'active' } }),
    createKey: (id: string) => this.request<ApiKey & { key: string }>('POST', `/v1/tenants/${enc(id)}/keys`, { body: {} }),
    /** The tenant's quota (operator). */
    getQuota: (id: string) => this.request<TenantQuotaView>('GET', `/v1/tenants/${enc(id)}/quota`),
    /** Replaces the tenant's quota overrides; values left out follow the server's defaults (operator). */
    setQuota: (id: string, overrides: TenantQuotaOverrides) =>
      this.request<TenantQuotaView>('PUT', `/v1/tenants/${enc(id)}/quota`, { body: overrides }),
  };

  /** The caller's own tenant quota (tenant and agent keys). */
  quota(): Promise<TenantQuotaView> {
    return this.request('GET', '/v1/quota');
  }

  readonly keys = {
    /** Keys without their secrets: a tenant admin's own and its agents'; the operator's all (or `tenant_id`'s). */
    list: (o: ListOptions & { tenant_id?: string } = {}) => this.request<Page<ApiKey>>('GET', '/v1/keys', { query: { ...o } }),
    revoke: (id: string) => this.request<ApiKey>('DELETE', `/v1/keys/${enc(id)}`),
  };

  readonly agents = {
    create: (body: { name: string; type?: string }) => this.request<Agent>('POST', '/v1/agents', { body }),
    list: (o: ListOptions = {}) => this.request<Page<Agent>>('GET', '/v1/agents', { query: { ...o } }),
    get: (id: string) => this.request<Agent>('GET', `/v1/agents/${enc(id)}`),
    disable: (id: string) => this.request<Agent>('PATCH', `/v1/agents/${enc(id)}`, { body: { status: 'disabled' } }),
    enable: (id: string) => this.request<Agent>('PATCH', `/v1/agents/${enc(id)}`, { body: { status: 'active' } }),
    createKey: (id: string) => this.request<ApiKey & { key: string }>('POST', `/v1/agents/${enc(id)}/keys`, { body: {} }),
    /** The agent's keys: id, prefix, created, last used, revoked (never the secret). */
    listKeys: (id: string, o: ListOptions = {}) => this.request<Page<ApiKey>>('GET', `/v1/agents/${enc(id)}/keys`, { query: { ...o } }),
  };

  readonly policies = {
    create: (body: { name: string; ruleset?: RulesetInput }) => this.request<Policy>('POST', '/v1/policies', { body }),
    list: (o: ListOptions = {}) => this.request<Page<Policy>>('GET', '/v1/policies', { query: { ...o } }),
    get: (id: string) => this.request<Policy>('GET', `/v1/policies/${enc(id)}`),
    /** Publishes version expected_version+1; ConflictError when someone published first. */
    publish: (id: string, body: { ruleset: RulesetInput; expected_version: number }) =>
      this.request<Policy>('PUT', `/v1/policies/${enc(id)}`, { body }),
    versions: (id: string, o: ListOptions = {}) =>
      this.request<Page<PolicyVersion>>('GET', `/v1/policies/${enc(id)}/versions`, { query: { ...o } }),
  };

  readonly jobs = {
    create: (body: CreateJobInput) => this.request<Job>('POST', '/v1/jobs', { body }),
    /** Submits and blocks until the job ends (bounded by the server; re-polls until terminal). */
    createAndWait: async (body: CreateJobInput, o: { timeoutMs?: number } = {}) => {
      const job = await this.request<Job>('POST', '/v1/jobs', { body, query: { wait: true }, timeoutMs: o.timeoutMs ?? 120_000 });
      return isTerminal(job) ? job : this.jobs.wait(job.id, o);
    },
    get: (id: string) => this.request<Job>('GET', `/v1/jobs/${enc(id)}`),
    list: (o: ListOptions & { status?: string; agent_id?: string; language?: string; verdict?: string } = {}) =>
      this.request<Page<Job>>('GET', '/v1/jobs', { query: { ...o } }),
    cancel: (id: string) => this.request<Job>('POST', `/v1/jobs/${enc(id)}/cancel`, { body: {} }),
    /**
     * Writes to the stdin of a running job submitted with `stdin_open: true` (at most 64 KiB a call);
     * `eof` closes it. Resolves once the program's pipe took the bytes.
     */
    writeStdin: async (id: string, data: string | Uint8Array, o: { eof?: boolean } = {}) => {
      const res = await this.requestRaw('POST', `/v1/jobs/${enc(id)}/stdin`, { rawBody: data, ...(o.eof ? { query: { eof: true } } : {}) });
      return (await res.json()) as { written_bytes: number; eof: boolean };
    },
    /** Deletes an ended job with its artifacts (a queued or running one is a ConflictError: cancel first). */
    delete: (id: string) => this.request<void>('DELETE', `/v1/jobs/${enc(id)}`),
    /**
     * Waits until the job is terminal, following its event stream; `timeoutMs`, `onTimeout` and
     * `signal` as for `run`.
     */
    wait: async (id: string, o: Pick<RunOptions, 'timeoutMs' | 'onTimeout' | 'signal'> = {}): Promise<Job> =>
      this.follow(id, o),
    /** The job's server-sent events: status changes, output chunks and `truncated` notices, ending with `end`. */
    events: (id: string, o: { timeoutMs?: number; signal?: AbortSignal } = {}) => this.jobEvents(id, o),
    /**
     * Submits a job and returns its handle at once; `handle.wait()` streams the output to the callbacks.
     *
     * ```ts
     * import { KilnClient } from 'kiln-sandbox-sdk';
     * const kiln = new KilnClient();
     * const handle = await kiln.jobs.start({ language: 'python', code: 'import time; time.sleep(30)' });
     * await handle.cancel();
     * const job = await handle.wait();
     * console.log(job.status); // → canceled
     * ```
     */
    start: async (body: CreateJobInput, o: RunOptions = {}): Promise<JobHandle> => {
      if (o.signal?.aborted) throw new AbortError('aborted before the job was submitted', undefined, false);
      const job = await this.jobs.create(body);
      o.onJob?.(job);
      let waiting: Promise<Job> | undefined;
      return {
        id: job.id,
        job,
        wait: () => (waiting ??= this.follow(job.id, o)),
        cancel: () => this.jobs.cancel(job.id),
      };
    },
    /**
     * Submits a job, streams its output to the callbacks, and returns the ended job. `timeoutMs` throws
     * a `TimeoutError` (the job goes on, or is canceled with `onTimeout: 'cancel'`); aborting `signal`
     * cancels the job and throws an `AbortError`.
     *
     * ```ts
     * import { KilnClient, TimeoutError } from 'kiln-sandbox-sdk';
     * const kiln = new KilnClient();
     * const job = await kiln.jobs.run(
     *   { language: 'python', files: [{ path: 'main.py', content: 'import lib; lib.hello()' }, { path: 'lib.py', content: 'def hello():\n    print("hello")' }], entrypoint: 'main.py' },
     *   { onJob: (j) => console.log('submitted', j.id), onStdout: (d) => process.stdout.write(d) },
     * );
     * console.log(job.verdict); // → ok
     * try {
     *   await kiln.jobs.run({ language: 'python', code: 'while True: pass' }, { timeoutMs: 1000, onTimeout: 'cancel' });
     * } catch (err) {
     *   if (!(err instanceof TimeoutError)) throw err;
     *   console.log(err.jobCanceled); // → true
     * }
     * ```
     */
    run: async (body: CreateJobInput, o: RunOptions = {}): Promise<Job> => (await this.jobs.start(body, o)).wait(),
  };

  /** Follows a job's events to its end, with the run options' timeout, abort and output callbacks. */
  private async follow(id: string, o: RunOptions): Promise<Job> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = o.timeoutMs !== undefined ? setTimeout(() => ((timedOut = true), controller.abort()), o.timeoutMs) : undefined;
    const onAbort = () => controller.abort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) controller.abort();
    try {
      return await this.streamToEnd(id, o, controller.signal);
    } catch (err) {
      if (timedOut) {
        if (o.onTimeout === 'cancel') {
          await this.jobs.cancel(id).catch(() => undefined);
          throw new TimeoutError(`job ${id} did not end within ${o.timeoutMs} ms; it was canceled`, id, true);
        }
        throw new TimeoutError(
          `job ${id} did not end within ${o.timeoutMs} ms; it goes on running (follow it with jobs.wait('${id}'); onTimeout: 'cancel' cancels instead)`,
          id,
          false,
        );
      }
      if (o.signal?.aborted) {
        await this.jobs.cancel(id).catch(() => undefined);
        throw new AbortError(`job ${id}: aborted; kiln was asked to cancel it`, id, true);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async streamToEnd(id: string, o: RunOptions, signal: AbortSignal): Promise<Job> {
    let streamed = false;
    const notices: OutputTruncatedNotice[] = [];
    for await (const event of this.jobEvents(id, { signal })) {
      if (event.type === 'output') {
        streamed = true;
        (event.chunk.stream === 'stdout' ? o.onStdout : o.onStderr)?.(event.chunk.data);
      } else if (event.type === 'truncated') {
        notices.push(event.notice);
      } else if (event.type === 'end') {
        // The server forgets live output a while after a job ends; the job carries small outputs inline.
        if (!streamed && notices.length === 0) {
          if (event.job.stdout) o.onStdout?.(event.job.stdout);
          if (event.job.stderr) o.onStderr?.(event.job.stderr);
        } else if (notices.length > 0) {
          o.onTruncated?.(notices, event.job);
        }
        return event.job;
      }
    }
    return this.request<Job>('GET', `/v1/jobs/${enc(id)}`, { signal });
  }
  readonly workflows = {
    create: (body: CreateWorkflowRequest) => this.request<Workflow>('POST', '/v1/workflows', { body }),
    get: (id: string) => this.request<Workflow>('GET', `/v1/workflows/${enc(id)}`),
    list: (o: ListOptions & { status?: string } = {}) => this.request<Page<Workflow>>('GET', '/v1/workflows', { query: { ...o } }),
    cancel: (id: string) => this.request<Workflow>('POST', `/v1/workflows/${enc(id)}/cancel`, { body: {} }),
    /** The workflow's server-sent events: `step` changes, each step's `output` chunks, then `end`. */
    events: (id: string, o: { timeoutMs?: number } = {}) => this.workflowEvents(id, o.timeoutMs),
    /** Submits a workflow, reports each step change and output to the callbacks, returns the ended workflow. */
    run: async (body: CreateWorkflowRequest, o: WorkflowRunOptions = {}): Promise<Workflow> => {
      const created = await this.workflows.create(body);
      o.onCreated?.(created);
      for await (const event of this.workflowEvents(created.id, o.timeoutMs)) {
        if (event.type === 'step') o.onStep?.(event.step);
        else if (event.type === 'output') o.onOutput?.(event.chunk);
        else if (event.type === 'end') return event.workflow;
      }
      return this.workflows.get(created.id);
    },
  };

  readonly artifacts = {
    list: (o: ListOptions & { owner_type?: string; owner_id?: string } = {}) =>
      this.request<Page<Artifact>>('GET', '/v1/artifacts', { query: { ...o } }),
    get: (id: string) => this.request<Artifact>('GET', `/v1/artifacts/${enc(id)}`),
    /** Deletes an artifact; a second delete is a NotFoundError. */
    delete: (id: string) => this.request<void>('DELETE', `/v1/artifacts/${enc(id)}`),
    /** Downloads the content; the checksum comes from the server's header. */
    download: async (id: string): Promise<ArtifactContent> => {
      const response = await this.fetch('GET', `/v1/artifacts/${enc(id)}/content`, { accept: '*/*', timeoutMs: null });
      const bytes = new Uint8Array(await response.arrayBuffer());
      const NodeBuffer = (globalThis as { Buffer?: { from(b: ArrayBufferLike): Uint8Array } }).Buffer;
      return { bytes: NodeBuffer ? NodeBuffer.from(bytes.buffer) : bytes, checksum: response.headers.get('x-kiln-checksum') ?? '' };
    },
  };

  readonly audit = {
    list: (o: ListOptions & Record<string, string | number | undefined> = {}) =>
      this.request<Page<AuditEvent>>('GET', '/v1/audit-events', { query: { ...o } }),
    verify: (o: { tenant_id?: string } = {}) => this.request<AuditVerifyResult>('GET', '/v1/audit-events/verify', { query: { ...o } }),
  };

  readonly runners = {
    list: (o: ListOptions = {}) => this.request<Page<RunnerNode>>('GET', '/v1/runners', { query: { ...o } }),
    get: (id: string) => this.request<RunnerNode>('GET', `/v1/runners/${enc(id)}`),
    drain: (id: string) => this.request<RunnerNode>('POST', `/v1/runners/${enc(id)}/drain`, { body: {} }),
  };

  readonly sandboxes = {
    list: (o: ListOptions & { job_id?: string; session_id?: string; runner_id?: string; status?: string } = {}) =>
      this.request<Page<SandboxInstance>>('GET', '/v1/sandboxes', { query: { ...o } }),
  };

  readonly services = {
    /** Starts a service (answers `starting`; `running` once its port answers). */
    create: (body: ServiceCreateInput) => this.request<Service>('POST', '/v1/services', { body, timeoutMs: 120_000 }),
    list: (o: ListOptions & { status?: Service['status']; agent_id?: string } = {}) =>
      this.request<Page<Service>>('GET', '/v1/services', { query: { ...o } }),
    get: (id: string) => this.request<Service>('GET', `/v1/services/${enc(id)}`),
    stop: (id: string) => this.request<Service>('POST', `/v1/services/${enc(id)}/stop`, { body: {} }),
    /** A token that opens this service alone (header `X-Kiln-Service-Token`, or `url` once in a browser). */
    createToken: (id: string, body: { ttl_seconds?: number } = {}) =>
      this.request<ServiceToken>('POST', `/v1/services/${enc(id)}/tokens`, { body }),
    revokeToken: (id: string, tokenId: string) =>
      this.request<{ id: string; revoked_at: string | null }>('DELETE', `/v1/services/${enc(id)}/tokens/${enc(tokenId)}`),
    /** The service's stdout and stderr from the start, as it comes, until it ends. */
    logs: (id: string, o: { timeoutMs?: number; signal?: AbortSignal } = {}) => this.serviceLogs(id, o),
  };

  languages(): Promise<{ items: LanguageOffer[] }> {
    return this.request('GET', '/v1/languages');
  }

  private async *jobEvents(id: string, o: { timeoutMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<JobStreamEvent> {
    const response = await this.fetch('GET', `/v1/jobs/${enc(id)}/events`, {
      accept: 'text/event-stream',
      timeoutMs: o.timeoutMs ?? null,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    if (!response.body) throw new KilnApiError(response.status, 'NO_BODY', 'the event stream has no body');
    for await (const sse of parseEventStream(response.body)) {
      if (sse.event === 'output') yield { type: 'output', chunk: JSON.parse(sse.data) as OutputChunk };
      else if (sse.event === 'status') yield { type: 'status', job: JSON.parse(sse.data) as Job };
      else if (sse.event === 'truncated') yield { type: 'truncated', notice: JSON.parse(sse.data) as OutputTruncatedNotice };
      else if (sse.event === 'end') {
        yield { type: 'end', job: JSON.parse(sse.data) as Job };
        return;
      }
    }
  }

  private async *serviceLogs(id: string, o: { timeoutMs?: number; signal?: AbortSignal }): AsyncGenerator<ServiceLogEvent> {
    const response = await this.fetch('GET', `/v1/services/${enc(id)}/logs`, {
      accept: 'text/event-stream',
      timeoutMs: o.timeoutMs ?? null,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    if (!response.body) throw new KilnApiError(response.status, 'NO_BODY', 'the event stream has no body');
    for await (const sse of parseEventStream(response.body)) {
      if (sse.event === 'output') yield { type: 'output', chunk: JSON.parse(sse.data) as OutputChunk };
      else if (sse.event === 'truncated') yield { type: 'truncated', notice: JSON.parse(sse.data) as Record<string, unknown> };
      else if (sse.event === 'end') {
        yield { type: 'end', ...(JSON.parse(sse.data) as { state: string; reason: string | null }) };
        return;
      }
    }
  }

  private async *workflowEvents(id: string, timeoutMs?: number): AsyncGenerator<WorkflowStreamEvent> {
    const response = await this.fetch('GET', `/v1/workflows/${enc(id)}/events`, { accept: 'text/event-stream', timeoutMs: timeoutMs ?? null });
    if (!response.body) throw new KilnApiError(response.status, 'NO_BODY', 'the event stream has no body');
    for await (const sse of parseEventStream(response.body)) {
      if (sse.event === 'workflow') yield { type: 'workflow', workflow: JSON.parse(sse.data) as Workflow };
      else if (sse.event === 'step') yield { type: 'step', step: JSON.parse(sse.data) as WorkflowStep };
      else if (sse.event === 'output') yield { type: 'output', chunk: JSON.parse(sse.data) as WorkflowOutputChunk };
      else if (sse.event === 'truncated') yield { type: 'truncated', notice: JSON.parse(sse.data) as Record<string, unknown> };
      else if (sse.event === 'end') {
        yield { type: 'end', workflow: JSON.parse(sse.data) as Workflow };
        return;
      }
    }
  }
}

/** `POST /v1/services` as a client may send it (fields with defaults are optional). */
export type ServiceCreateInput = Omit<CreateServiceRequest, 'restart' | 'public'> & { restart?: CreateServiceRequest['restart']; public?: boolean };

export type ServiceLogEvent =
  | { type: 'output'; chunk: OutputChunk }
  | { type: 'truncated'; notice: Record<string, unknown> }
  | { type: 'end'; state: string; reason: string | null };

export interface WorkflowRunOptions {
  onCreated?: (workflow: Workflow) => void;
  /** A step changed status (pending, queued, running, then its end). */
  onStep?: (step: WorkflowStep) => void;
  /** A chunk of a step's output, as its sandbox produces it. */
  onOutput?: (chunk: WorkflowOutputChunk) => void;
  /** Give up following (the workflow keeps running) after this long. @default none */
  timeoutMs?: number;
}

export type WorkflowStreamEvent =
  | { type: 'workflow'; workflow: Workflow }
  | { type: 'step'; step: WorkflowStep }
  | { type: 'output'; chunk: WorkflowOutputChunk }
  /** A step's live output is incomplete (its job's stdout/stderr artifacts hold all of it). */
  | { type: 'truncated'; notice: Record<string, unknown> }
  | { type: 'end'; workflow: Workflow };

export type JobStreamEvent =
  | { type: 'status'; job: Job }
  | { type: 'output'; chunk: OutputChunk }
  /** Live output is incomplete from here (or was before this watcher joined): see the notice. */
  | { type: 'truncated'; notice: OutputTruncatedNotice }
  | { type: 'end'; job: Job };

export function isTerminal(job: Pick<Job, 'status'>): boolean {
  return job.status === 'succeeded' || job.status === 'failed' || job.status === 'canceled';
}

const enc = encodeURIComponent;
