import type { ProblemDetails } from '@kiln/core';

/**
 * The root of every error the SDK throws for an API answer. `code` is the stable code of the problem
 * document (`NOT_FOUND`, `POLICY_VIOLATION`, …); `problem` is the whole document.
 */
export class KilnApiError extends Error {
  override name = 'KilnApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problem: Partial<ProblemDetails> = {},
  ) {
    super(message);
  }
  /** The request field at fault, for validation errors and policy violations. */
  get field(): string | undefined {
    return typeof this.problem.field === 'string' ? this.problem.field : undefined;
  }
}

export class AuthenticationError extends KilnApiError {
  override name = 'AuthenticationError';
}
export class ForbiddenError extends KilnApiError {
  override name = 'ForbiddenError';
}
export class NotFoundError extends KilnApiError {
  override name = 'NotFoundError';
}
export class ConflictError extends KilnApiError {
  override name = 'ConflictError';
}
export class ValidationError extends KilnApiError {
  override name = 'ValidationError';
}
export class PolicyViolationError extends KilnApiError {
  override name = 'PolicyViolationError';
}
/**
 * 429: the key is over its rate (`problem.reason` = `key_rate`) or the tenant's queue is full
 * (`queued_jobs`). Wait `retryAfter` seconds before trying again.
 */
export class RateLimitError extends KilnApiError {
  override name = 'RateLimitError';
  /** Seconds to wait before retrying: the Retry-After header, else the problem's `retry_after`. */
  retryAfter: number | undefined;
}

/** Retry-After in seconds (a number of seconds or an HTTP date), else the problem's `retry_after`. */
function retryAfterSeconds(header: string | null | undefined, problem: Partial<ProblemDetails>): number | undefined {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds;
    const date = Date.parse(header);
    if (Number.isFinite(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }
  return typeof problem.retry_after === 'number' ? problem.retry_after : undefined;
}
/**
 * A call did not finish within its timeout. For a request, the server gave no answer in time. For
 * `jobs.run(…, { timeoutMs })` (or a handle's `wait`), `jobId` names the job and `jobCanceled` says
 * what became of it: `true` with `onTimeout: 'cancel'` (kiln was asked to cancel it), `false` with
 * `onTimeout: 'detach'` (the default: it goes on; follow it with `jobs.wait(jobId)`).
 */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
  constructor(
    message: string,
    readonly jobId?: string,
    readonly jobCanceled?: boolean,
  ) {
    super(message);
  }
}

/**
 * The server could not be reached (connection refused, host not found, reset, TLS…): no answer came,
 * so nothing is known to have happened. `url` is the server's, `reason` a short human cause
 * (`connection refused`) and `cause` the underlying error.
 */
export class ConnectionError extends Error {
  override name = 'ConnectionError';
  constructor(
    readonly url: string,
    readonly reason: string,
    cause: unknown,
  ) {
    super(`cannot reach ${url} (${reason})`, { cause });
  }
}

/** `jobs.run` was stopped by its `signal`: kiln was asked to cancel job `jobId` (`jobCanceled`). */
export class AbortError extends Error {
  override name = 'AbortError';
  constructor(
    message: string,
    readonly jobId: string | undefined,
    readonly jobCanceled: boolean,
  ) {
    super(message);
  }
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
};

/** A short cause for a failed fetch: Node's undici hides it in `cause` (`TypeError: fetch failed`). */
export function networkReason(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_REASONS[code]) return NETWORK_REASONS[code];
    // AggregateError (IPv4 and IPv6 both refused) keeps its causes in `errors`.
    const next = (e as { cause?: unknown; errors?: unknown[] }).cause ?? (e as { errors?: unknown[] }).errors?.[0];
    if (!next) {
      if (typeof code === 'string') return code;
      break;
    }
    e = next;
  }
  return e instanceof Error && e.message && e.message !== 'fetch failed' ? e.message : 'network error';
}

/** Maps a problem+json answer onto the error class users can catch. */
export function errorFromProblem(status: number, problem: Partial<ProblemDetails>, retryAfter?: string | null): KilnApiError {
  const code = typeof problem.code === 'string' ? problem.code : `HTTP_${status}`;
  const message = `${code}: ${problem.detail ?? problem.title ?? `HTTP ${status}`}`;
  if (status === 401) return new AuthenticationError(status, code, message, problem);
  if (status === 403) return new ForbiddenError(status, code, message, problem);
  if (status === 404) return new NotFoundError(status, code, message, problem);
  if (status === 409) return new ConflictError(status, code, message, problem);
  if (status === 422 && code === 'POLICY_VIOLATION') return new PolicyViolationError(status, code, message, problem);
  if (status === 400 || status === 413 || status === 422) return new ValidationError(status, code, message, problem);
  if (status === 429) {
    const err = new RateLimitError(status, code, message, problem);
    err.retryAfter = retryAfterSeconds(retryAfter, problem);
    return err;
  }
  return new KilnApiError(status, code, message, problem);
}
