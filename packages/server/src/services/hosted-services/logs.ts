import { KilnError } from '@kiln/core';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { callRunner, type RunnerEndpoint } from '../sessions/runner-link.js';
import { runnerEndpoint } from '../sessions/lifecycle.js';
import { loadVisibleService } from './lifecycle.js';

/** A line of the runner's log stream. */
export type ServiceLogLine =
  | { type: 'stdout' | 'stderr'; data: string }
  | { type: 'dropped'; bytes: number }
  | { type: 'end'; state: string; reason: string | null };

/** How long one log stream may stay open. @default 24 h */
const MAX_LOG_STREAM_MS = 24 * 3600 * 1000;
/** What is kept of a service's log once its sandbox is destroyed: its last 64 KiB. */
export const LOG_TAIL_MAX_CHARS = 64 * 1024;

type OutputLine = { type: 'stdout' | 'stderr'; data: string };

/** Reads a runner's NDJSON log lines as they come, output decoded from base64. */
async function readLines(res: Response, onLine: (line: ServiceLogLine) => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!text) continue;
      const line = JSON.parse(text) as ServiceLogLine;
      if (line.type === 'stdout' || line.type === 'stderr') onLine({ type: line.type, data: Buffer.from(line.data, 'base64').toString('utf8') });
      else onLine(line);
    }
  }
}

/** The end of a live service's log (not following), at most LOG_TAIL_MAX_CHARS. */
export async function readLogTail(runner: RunnerEndpoint, id: string): Promise<OutputLine[]> {
  const res = await callRunner(runner, 'GET', `/v1/services/${id}/logs?follow=false`, undefined, { timeoutMs: 5000 });
  const lines: OutputLine[] = [];
  let chars = 0;
  await readLines(res, (line) => {
    if (line.type !== 'stdout' && line.type !== 'stderr') return;
    lines.push(line);
    chars += line.data.length;
    while (chars > LOG_TAIL_MAX_CHARS && lines.length > 1) chars -= lines.shift()!.data.length;
  });
  return lines;
}

/**
 * The log of a service from its runner, from the start (the runner keeps the last MiB): each line as
 * it comes, then `end` when the service ends. A service whose sandbox is gone has nothing more to say.
 */
export async function followServiceLogs(
  deps: JobDeps,
  principal: Principal,
  id: string,
  signal: AbortSignal,
  onLine: (line: ServiceLogLine) => void,
): Promise<void> {
  const row = await loadVisibleService(deps.store, principal, id);
  // Its sandbox is gone: what was kept of the log, then the end.
  const kept = () => {
    for (const line of JSON.parse(row.log_tail ?? '[]') as OutputLine[]) onLine(line);
    onLine({ type: 'end', state: row.status, reason: row.reason });
  };
  if (!row.runner_id) return kept();
  let res: Response;
  try {
    res = await callRunner(await runnerEndpoint(deps.store, row.runner_id), 'GET', `/v1/services/${id}/logs`, undefined, { signal, timeoutMs: MAX_LOG_STREAM_MS });
  } catch (err) {
    if (err instanceof KilnError && err.code === 'NOT_FOUND') return kept();
    throw err;
  }
  try {
    await readLines(res, onLine);
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
}
