/**
 * The catalogue of stable error codes and their HTTP status: one place, as in Fastify's lib/errors.js.
 * Every error a client can see is a KilnError with one of these codes, rendered as RFC 9457 problem+json.
 */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: { status: 400, title: 'The request is not valid' },
  MALFORMED_JSON: { status: 400, title: 'The body is not valid JSON' },
  INVALID_CURSOR: { status: 400, title: 'The cursor is not valid' },
  UNAUTHORIZED: { status: 401, title: 'Authentication required' },
  FORBIDDEN: { status: 403, title: 'Not allowed' },
  TENANT_SUSPENDED: { status: 403, title: 'The tenant is suspended' },
  AGENT_DISABLED: { status: 403, title: 'The agent is disabled' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  CONFLICT: { status: 409, title: 'Conflict' },
  STALE_ATTEMPT: { status: 409, title: 'The lease attempt is stale' },
  INVALID_TRANSITION: { status: 409, title: 'The resource is not in a state that allows this' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request took too long to arrive' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The body is too large' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  POLICY_VIOLATION: { status: 422, title: 'The request exceeds the policy' },
  UNSUPPORTED_LANGUAGE: { status: 422, title: 'The language is not offered' },
  ARTIFACT_REJECTED: { status: 422, title: 'The artifact was refused' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  INTERNAL: { status: 500, title: 'Internal error' },
  BAD_GATEWAY: { status: 502, title: 'The service behind the proxy could not be reached' },
  UNAVAILABLE: { status: 503, title: 'Temporarily unavailable' },
  GATEWAY_TIMEOUT: { status: 504, title: 'The service behind the proxy did not answer in time' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** One invalid field: its path in the request (`body.limits.memory_bytes`) and what is wrong. */
export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  field?: string;
  errors?: FieldError[];
  instance?: string;
  [extra: string]: unknown;
}

export interface KilnErrorOptions {
  field?: string;
  errors?: FieldError[];
  /** Extra members of the problem document (e.g. `ceiling` for POLICY_VIOLATION). */
  extra?: Record<string, unknown>;
  cause?: unknown;
}

/** The one error type of kiln: a stable code, a detail a person can act on, and the field at fault. */
export class KilnError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field: string | undefined;
  readonly errors: FieldError[] | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, detail: string, options: KilnErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KilnError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.field = options.field ?? options.errors?.[0]?.field;
    this.errors = options.errors;
    this.extra = options.extra;
  }

  toProblem(instance?: string): ProblemDetails {
    const problem: ProblemDetails = {
      // A relative reference: it resolves against the kiln that answered, which serves the page.
      type: problemTypeOf(this.code),
      title: ERROR_CATALOGUE[this.code].title,
      status: this.status,
      detail: this.message,
      code: this.code,
      ...this.extra,
    };
    if (this.field !== undefined) problem.field = this.field;
    if (this.errors !== undefined) problem.errors = this.errors;
    if (instance !== undefined) problem.instance = instance;
    return problem;
  }
}

/** The `type` of a problem: the path of the page kiln serves about the code (`/errors/validation-failed`). */
export function problemTypeOf(code: ErrorCode): string {
  return `/errors/${code.toLowerCase().replaceAll('_', '-')}`;
}

export function isKilnError(err: unknown): err is KilnError {
  return err instanceof KilnError;
}
