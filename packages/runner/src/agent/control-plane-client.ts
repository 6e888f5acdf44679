import type {
  CompletionReport,
  HeartbeatRequest,
  HeartbeatResponse,
  JobEvent,
  LeaseRequest,
  LeaseResponse,
  RegisterRunnerRequest,
  RegisterRunnerResponse,
  UploadedBlob,
} from '@kiln/core';

/** An answer of the control plane that was not a success; `status` 409 means a stale attempt. */
export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  /** Retrying cannot help: the request itself is wrong or no longer ours. */
  get permanent(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

/**
 * The runner's side of the runner protocol (ARCHITECTURE.md §7): HTTP to any control-plane replica with
 * the runner token. The runner holds no database credentials.
 */
export class ControlPlaneClient {
  private readonly baseUrl: string;

  constructor(
    serverUrl: string,
    private readonly token: string,
  ) {
    this.baseUrl = serverUrl.replace(/\/+$/, '');
  }

  register(body: RegisterRunnerRequest): Promise<RegisterRunnerResponse> {
    return this.json('POST', '/v1/runner/register', body);
  }

  heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.json('POST', '/v1/runner/heartbeat', body);
  }

  /** Long-polls for work; resolves with no leases when the wait ends empty. */
  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    return this.json('POST', '/v1/runner/lease', body, { timeoutMs: (body.wait_ms ?? 25_000) + 10_000, signal });
  }

  sendEvents(jobId: string, attempt: number, events: JobEvent[]): Promise<void> {
    return this.json('POST', `/v1/runner/leases/${encodeURIComponent(jobId)}/events`, { attempt, events });
  }

  /** Uploads a blob (stdout, stderr, an artifact) for a lease; the server stores it content-addressed. */
  async uploadBlob(jobId: string, attempt: number, content: Buffer): Promise<UploadedBlob> {
    return this.json(
      'PUT',
      `/v1/runner/leases/${encodeURIComponent(jobId)}/blobs?attempt=${attempt}`,
      content,
      { timeoutMs: 120_000 },
    );
  }

  complete(jobId: string, report: CompletionReport): Promise<void> {
    return this.json('POST', `/v1/runner/leases/${encodeURIComponent(jobId)}/complete`, report);
  }

  private async json<T>(
    method: string,
    path: string,
    body: unknown,
    options: { timeoutMs?: number; signal?: AbortSignal | undefined } = {},
  ): Promise<T> {
    const isBinary = Buffer.isBuffer(body);
    const timeout = AbortSignal.timeout(options.timeoutMs ?? 15_000);
    const response = await fetch(this.baseUrl + path, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        'content-type': isBinary ? 'application/octet-stream' : 'application/json',
      },
      body: isBinary ? (body as Buffer) : JSON.stringify(body),
      signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
    });
    const text = await response.text();
    if (!response.ok) {
      let code = `HTTP_${response.status}`;
      let detail = text.slice(0, 300);
      try {
        const problem = JSON.parse(text) as { code?: string; detail?: string };
        code = problem.code ?? code;
        detail = problem.detail ?? detail;
      } catch {
        // not problem+json: keep the raw text
      }
      throw new ControlPlaneError(response.status, code, `${method} ${path}: ${code}: ${detail}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
