import type { CompileResult, Job, OutputRefs, RejectedArtifact } from '@kiln/core';
import type { JobRow } from '../store/jobs.js';

const parse = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

/** A job row as the API answers it. */
export function jobFromRow(row: JobRow): Job {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    agent_id: row.agent_id,
    policy_id: row.policy_id,
    policy_version: row.policy_version,
    language: row.language,
    version: row.language_version,
    status: row.status as Job['status'],
    verdict: row.verdict as Job['verdict'],
    attempt: row.attempt,
    zone: row.zone,
    requested_at: row.requested_at,
    started_at: row.started_at,
    completed_at: row.completed_at,
    exit_status: parse(row.exit_status),
    resource_usage: parse(row.resource_usage),
    output_refs: parse<OutputRefs>(row.output_refs),
    stdout: row.stdout_inline,
    stderr: row.stderr_inline,
    rejected_artifacts: parse<RejectedArtifact[]>(row.rejected_artifacts) ?? [],
    compile: parse<CompileResult>(row.compile_result ?? null),
    error: row.error,
  };
}

export function isTerminalStatus(status: string): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'canceled';
}
