import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { KilnError, signPlaneRequest } from '@kiln/core';

/** How long the control plane waits for a runner to answer a session call (steps stream longer). */
const CALL_TIMEOUT_MS = 30_000;

/** The runner a session lives on, as the control plane reaches it. */
export interface RunnerEndpoint {
  id: string;
  address: string | null;
  signing_key: string | null;
}

/**
 * A signed call to a runner's session endpoint (ARCHITECTURE.md §7): every request carries the
 * control plane's HMAC over method, path, body hash, timestamp and nonce, under the runner's own key.
 * Any replica can make it: the key is in the runner's row.
 */
export async function callRunner(
  runner: RunnerEndpoint,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  pathWithQuery: string,
  body: unknown,
  options: { signal?: AbortSignal; timeoutMs?: number; stream?: Readable } = {},
): Promise<Response> {
  if (!runner.address || !runner.signing_key) {
    throw new KilnError('UNAVAILABLE', `runner ${runner.id} has no session endpoint registered; retry later`);
  }
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string> = {
    // Wall-clock time, not the injectable clock: the runner checks freshness against its own clock.
    ...signPlaneRequest(runner.signing_key, { method, pathWithQuery, body: text, streamed: options.stream !== undefined }, Date.now()),
    ...(options.stream ? { 'content-type': 'application/octet-stream' } : body === undefined ? {} : { 'content-type': 'application/json' }),
  };
  const signals = [AbortSignal.timeout(options.timeoutMs ?? CALL_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])];
  let res: Response;
  try {
    res = await fetch(new URL(pathWithQuery, runner.address), {
      method,
      headers,
      // A stream passes through chunk by chunk (duplex half): the body never sits whole in memory here.
      ...(options.stream
        ? { body: Readable.toWeb(options.stream) as ReadableStream, duplex: 'half' }
        : body === undefined
          ? {}
          : { body: text }),
      signal: AbortSignal.any(signals),
    } as RequestInit);
  } catch (err) {
    throw new KilnError('UNAVAILABLE', `runner ${runner.id} did not answer: ${(err as Error).message}; retry later`);
  }
  if (res.ok) return res;
  const problem = (await res.json().catch(() => ({}))) as { code?: string; detail?: string; field?: string; reason?: string };
  if (res.status === 404) throw new KilnError('NOT_FOUND', problem.detail ?? 'the runner does not know this session');
  if (res.status === 400 || res.status === 409 || res.status === 413) {
    const code = res.status === 400 ? 'VALIDATION_FAILED' : res.status === 409 ? 'CONFLICT' : 'PAYLOAD_TOO_LARGE';
    throw new KilnError(code, problem.detail ?? 'the runner refused the request', {
      ...(problem.field ? { field: problem.field } : {}),
      // The runner's own reason (no_session_capacity: its memory budget is taken), for placement.
      ...(problem.reason ? { extra: { runner_reason: problem.reason } } : {}),
    });
  }
  throw new KilnError('UNAVAILABLE', `runner ${runner.id} answered ${res.status}: ${problem.detail ?? 'no detail'}; retry later`);
}

export async function callRunnerJson<T>(
  runner: RunnerEndpoint,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  pathWithQuery: string,
  body: unknown,
): Promise<T> {
  const res = await callRunner(runner, method, pathWithQuery, body);
  return (await res.json()) as T;
}
