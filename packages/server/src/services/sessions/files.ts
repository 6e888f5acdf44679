import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { KilnError } from '@kiln/core';
import { touchSession } from '../../store/sessions.js';
import { auditSuccess } from '../audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { activeSessionEndpoint } from './lifecycle.js';
import { callRunner, callRunnerJson, uploadToRunner } from './runner-link.js';

/** Longest a file transfer may take end to end (100 MiB at a slow 1 MiB/s, with room). */
const TRANSFER_TIMEOUT_MS = 10 * 60_000;

export interface FileEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size_bytes: number;
  mode: number;
  modified_at: string;
}

const q = (path: string) => `path=${encodeURIComponent(path)}`;

async function touched(deps: JobDeps, principal: Principal, sessionId: string, agentId: string | null, action: string, details: Record<string, unknown>) {
  await deps.store.transaction(async (tx) => {
    await touchSession(tx, sessionId, deps.clock.nowMs());
    await auditSuccess(deps, tx, principal, { action, resource_type: 'session', resource_id: sessionId, subject_agent_id: agentId, details });
  });
}

/**
 * `PUT …/files?path=`: the request's bytes stream through to the runner holding the sandbox, never
 * gathered here; the runner writes them beside the target and renames only when all fit.
 */
export async function writeSessionFile(deps: JobDeps, principal: Principal, sessionId: string, path: string, body: Readable) {
  const { row, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const written = await uploadToRunner<{ path: string; size_bytes: number }>(runner, `/v1/sessions/${sessionId}/files?${q(path)}`, body, TRANSFER_TIMEOUT_MS);
  await touched(deps, principal, sessionId, row.agent_id, 'session.file_write', { path, size_bytes: written.size_bytes });
  return written;
}

/** `GET …/files?path=`: the runner's stream, passed on as it comes. */
export async function readSessionFile(deps: JobDeps, principal: Principal, sessionId: string, path: string) {
  const { runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const res = await callRunner(runner, 'GET', `/v1/sessions/${sessionId}/files?${q(path)}`, undefined, {
    timeoutMs: TRANSFER_TIMEOUT_MS,
  });
  await touchSession(deps.store, sessionId, deps.clock.nowMs());
  if (!res.body) throw new KilnError('UNAVAILABLE', 'the runner sent no content; retry');
  return { stream: Readable.fromWeb(res.body as ReadableStream), size: res.headers.get('content-length') };
}

export async function listSessionFiles(deps: JobDeps, principal: Principal, sessionId: string, path: string) {
  const { runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const answer = await callRunnerJson<{ items: FileEntry[] }>(runner, 'GET', `/v1/sessions/${sessionId}/files/list?${q(path)}`, undefined);
  await touchSession(deps.store, sessionId, deps.clock.nowMs());
  return answer;
}

export async function removeSessionFile(deps: JobDeps, principal: Principal, sessionId: string, path: string) {
  const { row, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  await callRunner(runner, 'DELETE', `/v1/sessions/${sessionId}/files?${q(path)}`, undefined);
  await touched(deps, principal, sessionId, row.agent_id, 'session.file_remove', { path });
}

export async function makeSessionDir(deps: JobDeps, principal: Principal, sessionId: string, path: string) {
  const { row, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  await callRunner(runner, 'POST', `/v1/sessions/${sessionId}/files/mkdir`, { path });
  await touched(deps, principal, sessionId, row.agent_id, 'session.file_mkdir', { path });
}

export async function renameSessionFile(deps: JobDeps, principal: Principal, sessionId: string, from: string, to: string) {
  const { row, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  await callRunner(runner, 'POST', `/v1/sessions/${sessionId}/files/rename`, { from, to });
  await touched(deps, principal, sessionId, row.agent_id, 'session.file_rename', { from, to });
}
