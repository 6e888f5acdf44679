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
import { planeSigningKey } from '@kiln/core';
import { KeepAliveHttp, type KeepAliveHttpOptions } from './keep-alive-http.js';

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

/** Where a runner keeps the credential registration issued it, across restarts. */
export interface CredentialKeeper {
  load(): string | undefined;
  save(credential: string): void;
}

/**
 * The runner's side of the runner protocol (ARCHITECTURE.md §7): HTTP to any control-plane replica. The
 * fleet's join token only registers; registration issues this node a credential of its own, which every
 * other call carries and the next registration (a restart) presents to prove it is the same node. The
 * runner holds no database credentials. Requests go over a few kept-alive connections the client owns.
 */
export class ControlPlaneClient {
  private readonly http: KeepAliveHttp;
  private credential: string | undefined;

  constructor(
    serverUrl: string,
    private readonly joinToken: string,
    private readonly keeper?: CredentialKeeper,
    connections: KeepAliveHttpOptions = {},
  ) {
    this.http = new KeepAliveHttp(serverUrl, connections);
    this.credential = keeper?.load();
  }

  /** Closes the kept-alive connections (idle ones never keep the process alive, but the server sees them go). */
  close(): void {
    this.http.close();
  }

  /** The key the control plane signs its requests to this node with: derived from the credential held. */
  signingKey(): string | undefined {
    return this.credential ? planeSigningKey(this.credential) : undefined;
  }

  /**
   * Registers with the credential this node holds (a restart: the control plane knows it is the same
   * node), or with the join token when it holds none or the control plane no longer takes it (revoked,
   * another control plane). A newly issued credential is kept before the answer is used.
   */
  async register(body: RegisterRunnerRequest): Promise<RegisterRunnerResponse> {
    let answer: RegisterRunnerResponse | undefined;
    if (this.credential) {
      try {
        answer = await this.json<RegisterRunnerResponse>('POST', '/v1/runner/register', body);
      } catch (err) {
        if (!(err instanceof ControlPlaneError && err.status === 401)) throw err;
        this.credential = undefined;
      }
    }
    answer ??= await this.json<RegisterRunnerResponse>('POST', '/v1/runner/register', body, { token: this.joinToken });
    if (answer.credential) {
      this.keeper?.save(answer.credential);
      this.credential = answer.credential;
    }
    return answer;
  }

  heartbeat(body: HeartbeatRequest, options: { timeoutMs?: number } = {}): Promise<HeartbeatResponse> {
    return this.json('POST', '/v1/runner/heartbeat', body, options);
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
    options: { timeoutMs?: number; signal?: AbortSignal | undefined; token?: string } = {},
  ): Promise<T> {
    const isBinary = Buffer.isBuffer(body);
    const response = await this.http.request({
      method,
      path,
      headers: {
        // Before registration there is no credential: the join token is refused everywhere but there.
        authorization: `Bearer ${options.token ?? this.credential ?? this.joinToken}`,
        'content-type': isBinary ? 'application/octet-stream' : 'application/json',
      },
      body: isBinary ? (body as Buffer) : JSON.stringify(body),
      timeoutMs: options.timeoutMs ?? 15_000,
      signal: options.signal,
    });
    const text = response.body.toString('utf8');
    if (response.status < 200 || response.status > 299) {
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
