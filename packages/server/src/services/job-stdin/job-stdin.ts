import { JOB_STDIN_CHUNK_MAX_BYTES, KilnError, type JobSpec } from '@kiln/core';
import { auditSuccess } from '../audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { findTenantJob } from '../jobs.js';
import { callRunner } from '../sessions/runner-link.js';
import { runnerEndpoint } from '../sessions/lifecycle.js';

/**
 * Writes to one job waiting on this replica, beyond the one in flight. With one chunk each at most
 * (JOB_STDIN_CHUNK_MAX_BYTES), a job whose program does not read holds at most this many chunks here;
 * the next write is refused with 429 until the program reads. @default 16
 */
export const MAX_QUEUED_STDIN_WRITES = 16;

/** A job's writes in order: each goes to the runner once the one before it was answered. */
interface Lane {
  tail: Promise<unknown>;
  queued: number;
}
const lanesByStore = new WeakMap<object, Map<string, Lane>>();

export interface StdinWrite {
  data: Buffer;
  eof: boolean;
}

/**
 * `POST /v1/jobs/{id}/stdin` (and the Piston WebSocket's stdin `data`): bytes for the stdin of a running
 * job submitted with `stdin_open`, passed to the runner holding its current attempt over the signed
 * path (ARCHITECTURE.md §7); `eof` closes it. The answer comes once the program's pipe took the bytes,
 * so a caller that waits for it never floods; one that does not is refused past the queue bound.
 */
export async function writeJobStdin(deps: JobDeps, principal: Principal, jobId: string, input: StdinWrite): Promise<{ written_bytes: number; eof: boolean }> {
  if (input.data.length > JOB_STDIN_CHUNK_MAX_BYTES) {
    throw new KilnError('PAYLOAD_TOO_LARGE', `one stdin write carries at most ${JOB_STDIN_CHUNK_MAX_BYTES} bytes; split it`, { field: 'body' });
  }
  // Visibility first: another tenant's job is 404, whatever its state.
  const row = await findTenantJob(deps, principal, jobId);
  const lanes = lanesByStore.get(deps.store) ?? new Map<string, Lane>();
  lanesByStore.set(deps.store, lanes);
  const lane = lanes.get(jobId) ?? { tail: Promise.resolve(), queued: 0 };
  if (lane.queued > MAX_QUEUED_STDIN_WRITES) {
    throw new KilnError('RATE_LIMITED', `${MAX_QUEUED_STDIN_WRITES} stdin writes to job ${jobId} wait already: its program is not reading; send more once they are answered`, {
      extra: { retry_after: 1, reason: 'stdin_queue', limit: MAX_QUEUED_STDIN_WRITES },
    });
  }
  lanes.set(jobId, lane);
  lane.queued += 1;
  const run = lane.tail.then(() => forward(deps, principal, row.id, input));
  lane.tail = run.catch(() => {});
  try {
    return await run;
  } finally {
    lane.queued -= 1;
    if (lane.queued === 0) lanes.delete(jobId);
  }
}

async function forward(deps: JobDeps, principal: Principal, jobId: string, input: StdinWrite): Promise<{ written_bytes: number; eof: boolean }> {
  // Read again now that the writes before this one are done: the job may have ended or moved meanwhile.
  const row = await findTenantJob(deps, principal, jobId);
  if (row.status !== 'running' || row.runner_id === null) {
    throw new KilnError('INVALID_TRANSITION', `job ${jobId} is ${row.status}; stdin goes only to a running job`, {
      extra: { entity: 'job', from: row.status },
    });
  }
  const spec = JSON.parse(row.request) as JobSpec;
  if (!spec.stdin_open) {
    throw new KilnError('CONFLICT', `job ${jobId} took its stdin at submission; submit it with "stdin_open": true to write more while it runs`);
  }
  const runner = await runnerEndpoint(deps.store, row.runner_id);
  const body = { attempt: row.attempt, data_base64: input.data.toString('base64'), eof: input.eof };
  try {
    await callRunner(runner, 'POST', `/v1/jobs/${jobId}/stdin`, body);
  } catch (err) {
    // The runner knows no open stdin for it: its program has ended (or never started) there.
    if (err instanceof KilnError && err.code === 'NOT_FOUND') {
      throw new KilnError('CONFLICT', `job ${jobId}'s program is not reading stdin on its runner (it ended or did not start); read the job`);
    }
    throw err;
  }
  await deps.store.transaction((tx) =>
    auditSuccess(deps, tx, principal, {
      action: 'job.stdin',
      resource_type: 'job',
      resource_id: jobId,
      subject_agent_id: row.agent_id,
      details: { bytes: input.data.length, eof: input.eof, attempt: row.attempt },
    }),
  );
  return { written_bytes: input.data.length, eof: input.eof };
}
