import type { EgressSummary } from '@kiln/core';
import type { JobRow } from '../store/jobs.js';

/**
 * What happened in the job plane, told after the change committed: metrics count it and the log says
 * it, from one place. Listeners must be quick and must not throw into the service (errors are dropped).
 */
export type PlaneEvent =
  | {
      type: 'job_ended';
      jobId: string;
      tenantId: string;
      agentId: string | null;
      language: string;
      status: string;
      verdict: string;
      /** from submission to the first lease; null when it never ran (canceled while queued) */
      queueMs: number | null;
      /** from the first lease to the end; null when it never ran */
      runMs: number | null;
      /** files the sandbox made that were not kept (over the policy's or the quota's limits) */
      rejectedArtifacts: number;
      /** the job's flags (domain/job-flags.ts); undefined when the row told did not carry them */
      flags: number | undefined;
    }
  | { type: 'lease_granted'; jobId: string; runnerId: string; language: string; attempt: number }
  | { type: 'lease_expired'; jobId: string; runnerId: string | null; requeued: boolean }
  | { type: 'job_requeued'; jobId: string; reason: string }
  | { type: 'runner_state'; runnerId: string; name?: string; from: string | null; to: string; reason: string }
  /** what a sandbox under an egress allowlist did on the network, told once when its runner reports it */
  | { type: 'egress'; sandbox: 'job' | 'session' | 'service'; summary: EgressSummary };

export type PlaneListener = (event: PlaneEvent) => void;

export class PlaneEvents {
  private readonly listeners: PlaneListener[] = [];

  on(listener: PlaneListener): void {
    this.listeners.push(listener);
  }

  emit(event: PlaneEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A metric or a log line must never fail the work it describes.
      }
    }
  }
}

const msBetween = (from: string | null, to: string | null) =>
  from === null || to === null ? null : Math.max(0, Date.parse(to) - Date.parse(from));

/** The `job_ended` event of a job row that reached its end. */
export function jobEnded(
  row: Pick<JobRow, 'id' | 'tenant_id' | 'agent_id' | 'language' | 'status' | 'verdict' | 'requested_at' | 'started_at' | 'completed_at'> & {
    rejected_artifacts?: string | null;
    flags?: number;
  },
): PlaneEvent {
  return {
    type: 'job_ended',
    jobId: row.id,
    tenantId: row.tenant_id,
    agentId: row.agent_id,
    language: row.language,
    status: row.status,
    verdict: row.verdict ?? 'none',
    queueMs: msBetween(row.requested_at, row.started_at),
    runMs: msBetween(row.started_at, row.completed_at),
    rejectedArtifacts: countOf(row.rejected_artifacts),
    flags: row.flags,
  };
}

function countOf(json: string | null | undefined): number {
  if (!json) return 0;
  try {
    const parsed: unknown = JSON.parse(json);
    return Array.isArray(parsed) ? parsed.length : 0;
  } catch {
    return 0;
  }
}
