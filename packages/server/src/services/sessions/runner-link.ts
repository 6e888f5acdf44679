import http from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<Response> {
  const { address, key } = endpointOf(runner);
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string> = {
    // Wall-clock time, not the injectable clock: the runner checks freshness against its own clock.
    ...signPlaneRequest(key, { method, pathWithQuery, body: text }, Date.now()),
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
  };
  const signals = [AbortSignal.timeout(options.timeoutMs ?? CALL_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])];
  let res: Response;
  try {
    res = await fetch(new URL(pathWithQuery, address), {
      method,
      headers,
      ...(body === undefined ? {} : { body: text }),
      signal: AbortSignal.any(signals),
    });
  } catch (err) {
    throw new KilnError('UNAVAILABLE', `runner ${runner.id} did not answer: ${(err as Error).message}; retry later`);
  }
  if (res.ok) return res;
  throw refusal(runner, res.status, (await res.json().catch(() => ({}))) as RunnerProblem);
}

/**
 * A signed streamed upload (`PUT …/files`): the source is piped into the request with backpressure, a
 * chunk at a time, so a 100 MiB file never sits in the control plane's memory (fetch with a stream body
 * keeps the chunks it sent until the request ends, on Node 20; node:http does not). The body is signed
 * as `streamed`: method, path, time and nonce are signed; the workspace bounds the size.
 */
export async function uploadToRunner<T>(runner: RunnerEndpoint, pathWithQuery: string, source: Readable, timeoutMs: number): Promise<T> {
  const { address, key } = endpointOf(runner);
  const headers = {
    ...signPlaneRequest(key, { method: 'PUT', pathWithQuery, streamed: true }, Date.now()),
    'content-type': 'application/octet-stream',
  };
  const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request(new URL(pathWithQuery, address), { method: 'PUT', headers, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        // An answer is a small JSON document: anything past 64 KiB is not kept.
        if ((size += c.length) <= 64 * 1024) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // The runner may answer (413: the disk is full) before it read everything; the answer decides.
    pipeline(source, req).catch(() => {});
  }).catch((err: Error) => {
    throw new KilnError('UNAVAILABLE', `runner ${runner.id} did not answer: ${err.message}; retry later`);
  });
  let parsed: unknown = {};
  try {
    parsed = JSON.parse(answer.text);
  } catch {
    // not JSON: the status says enough
  }
  if (answer.status >= 200 && answer.status < 300) return parsed as T;
  throw refusal(runner, answer.status, parsed as RunnerProblem);
}

interface RunnerProblem {
  code?: string;
  detail?: string;
  field?: string;
  reason?: string;
}

function endpointOf(runner: RunnerEndpoint): { address: string; key: string } {
  if (!runner.address || !runner.signing_key) {
    throw new KilnError('UNAVAILABLE', `runner ${runner.id} has no session endpoint registered; retry later`);
  }
  return { address: runner.address, key: runner.signing_key };
}

/** The runner's refusal as the control plane's error: its 400, 404, 409 and 413 keep their meaning, the rest is 503. */
function refusal(runner: RunnerEndpoint, status: number, problem: RunnerProblem): KilnError {
  if (status === 404) return new KilnError('NOT_FOUND', problem.detail ?? 'the runner does not know this session');
  if (status === 400 || status === 409 || status === 413) {
    const code = status === 400 ? 'VALIDATION_FAILED' : status === 409 ? 'CONFLICT' : 'PAYLOAD_TOO_LARGE';
    return new KilnError(code, problem.detail ?? 'the runner refused the request', {
      ...(problem.field ? { field: problem.field } : {}),
      // The runner's own reason (no_session_capacity: its memory budget is taken), for placement.
      ...(problem.reason ? { extra: { runner_reason: problem.reason } } : {}),
    });
  }
  return new KilnError('UNAVAILABLE', `runner ${runner.id} answered ${status}: ${problem.detail ?? 'no detail'}; retry later`);
}

/**
 * The lines of a runner's NDJSON answer, parsed, as they arrive. Each chunk is searched for a newline
 * once, so a long line (a collected file, in base64) costs its length, not its length times its chunks.
 */
export async function* ndjsonLines<T>(res: Response): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let parts: string[] = [];
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    let text = decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      const line = parts.join('') + text.slice(0, nl);
      parts = [];
      text = text.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
    if (text) parts.push(text);
  }
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
