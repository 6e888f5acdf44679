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
/** The call did not finish within its timeout (no answer from the server in time). */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
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
