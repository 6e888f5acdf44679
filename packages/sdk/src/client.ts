import type {
  Agent,
  ApiKey,
  Artifact,
  AuditEvent,
  AuditVerifyResult,
  CreateJobRequest,
  Job,
  LanguageOffer,
  OutputTruncatedNotice,
  Policy,
  PolicyVersion,
  Ruleset,
  RunnerNode,
  SandboxInstance,
  Tenant,
  TenantQuotaOverrides,
  TenantQuotaView,
} from '@kiln/core';
import { errorFromProblem, KilnApiError, TimeoutError } from './errors.js';
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
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  /**
   * Live output is incomplete (a slow reader was cut, a buffer was full, the runner lost a batch):
   * `job` is the finished job, whose `output_refs.stdout`/`stderr` artifacts hold the whole output.
   * Called once, after the end, with every notice the stream carried.
   */
  onTruncated?: (notices: OutputTruncatedNotice[], job: Job) => void;
  /** Give up waiting (the job keeps running) after this long. @default none */
  timeoutMs?: number;
}

export interface ArtifactContent {
  bytes: Buffer;
  checksum: string;
}

type Query = Record<string, string | number | boolean | undefined>;

/**
 * A typed client for kiln's HTTP API. Options fall back to KILN_URL and KILN_API_KEY, then defaults.
 *
 * ```ts
 * const kiln = new KilnClient({ apiKey });
 * const job = await kiln.jobs.run({ language: 'python', code: 'print(1)' }, { onStdout: process.stdout.write });
 * ```
 */
export class KilnClient {
  readonly url: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: KilnClientOptions = {}) {
    this.url = (options.url ?? process.env.KILN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    this.apiKey = options.apiKey ?? process.env.KILN_API_KEY;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Sends one request and returns the parsed JSON answer; problem+json answers throw a KilnApiError. */
  async request<T>(method: string, path: string, options: { body?: unknown; query?: Query; timeoutMs?: number } = {}): Promise<T> {
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
    options: { body?: unknown; rawBody?: NonNullable<RequestInit['body']>; query?: Query; timeoutMs?: number | null; accept?: string },
  ): Promise<Response> {
    const url = new URL(this.url + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.rawBody !== undefined) headers['content-type'] = 'application/octet-stream';
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : options.timeoutMs;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        // A stream body goes out as it is read (duplex half), never gathered first.
        ...(options.rawBody !== undefined ? { body: options.rawBody, duplex: 'half' } : {}),
        ...(timeoutMs !== null ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
      } as RequestInit);
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') throw new TimeoutError(`${method} ${path}: no answer within ${timeoutMs} ms`);
      throw err;
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
    revoke: (id: string) => this.request<ApiKey>('DELETE', `/v1/keys/${enc(id)}`),
  };

  readonly agents = {
    create: (body: { name: string; type?: string }) => this.request<Agent>('POST', '/v1/agents', { body }),
    list: (o: ListOptions = {}) => this.request<Page<Agent>>('GET', '/v1/agents', { query: { ...o } }),
    get: (id: string) => this.request<Agent>('GET', `/v1/agents/${enc(id)}`),
    disable: (id: string) => this.request<Agent>('PATCH', `/v1/agents/${enc(id)}`, { body: { status: 'disabled' } }),
    enable: (id: string) => this.request<Agent>('PATCH', `/v1/agents/${enc(id)}`, { body: { status: 'active' } }),
    createKey: (id: string) => this.request<ApiKey & { key: string }>('POST', `/v1/agents/${enc(id)}/keys`, { body: {} }),
  };

  readonly policies = {
    create: (body: { name: string; ruleset?: Ruleset }) => this.request<Policy>('POST', '/v1/policies', { body }),
    list: (o: ListOptions = {}) => this.request<Page<Policy>>('GET', '/v1/policies', { query: { ...o } }),
    get: (id: string) => this.request<Policy>('GET', `/v1/policies/${enc(id)}`),
    /** Publishes version expected_version+1; ConflictError when someone published first. */
    publish: (id: string, body: { ruleset: Ruleset; expected_version: number }) =>
      this.request<Policy>('PUT', `/v1/policies/${enc(id)}`, { body }),
    versions: (id: string, o: ListOptions = {}) =>
      this.request<Page<PolicyVersion>>('GET', `/v1/policies/${enc(id)}/versions`, { query: { ...o } }),
  };

  readonly jobs = {
    create: (body: CreateJobRequest) => this.request<Job>('POST', '/v1/jobs', { body }),
    /** Submits and blocks until the job ends (bounded by the server; re-polls until terminal). */
    createAndWait: async (body: CreateJobRequest, o: { timeoutMs?: number } = {}) => {
      const job = await this.request<Job>('POST', '/v1/jobs', { body, query: { wait: true }, timeoutMs: o.timeoutMs ?? 120_000 });
      return isTerminal(job) ? job : this.jobs.wait(job.id, o);
    },
    get: (id: string) => this.request<Job>('GET', `/v1/jobs/${enc(id)}`),
    list: (o: ListOptions & { status?: string; agent_id?: string } = {}) =>
      this.request<Page<Job>>('GET', '/v1/jobs', { query: { ...o } }),
    cancel: (id: string) => this.request<Job>('POST', `/v1/jobs/${enc(id)}/cancel`, { body: {} }),
    /** Deletes an ended job with its artifacts (a queued or running one is a ConflictError: cancel first). */
    delete: (id: string) => this.request<void>('DELETE', `/v1/jobs/${enc(id)}`),
    /** Waits until the job is terminal, following its event stream. */
    wait: async (id: string, o: { timeoutMs?: number } = {}): Promise<Job> => {
      for await (const event of this.jobs.events(id, o)) if (event.type === 'end') return event.job;
      return this.jobs.get(id);
    },
    /** The job's server-sent events: status changes, output chunks and `truncated` notices, ending with `end`. */
    events: (id: string, o: { timeoutMs?: number } = {}) => this.jobEvents(id, o.timeoutMs),
    /** Submits a job, streams its output to the callbacks, and returns the finished job. */
    run: async (body: CreateJobRequest, o: RunOptions = {}): Promise<Job> => {
      const job = await this.jobs.create(body);
      let streamed = false;
      const notices: OutputTruncatedNotice[] = [];
      for await (const event of this.jobEvents(job.id, o.timeoutMs)) {
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
      return this.jobs.get(job.id);
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
      return { bytes: Buffer.from(await response.arrayBuffer()), checksum: response.headers.get('x-kiln-checksum') ?? '' };
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
    list: (o: ListOptions & { job_id?: string; session_id?: string; runner_id?: string } = {}) =>
      this.request<Page<SandboxInstance>>('GET', '/v1/sandboxes', { query: { ...o } }),
  };

  languages(): Promise<{ items: LanguageOffer[] }> {
    return this.request('GET', '/v1/languages');
  }

  private async *jobEvents(id: string, timeoutMs?: number): AsyncGenerator<JobStreamEvent> {
    const response = await this.fetch('GET', `/v1/jobs/${enc(id)}/events`, {
      accept: 'text/event-stream',
      timeoutMs: timeoutMs ?? null,
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
}

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
