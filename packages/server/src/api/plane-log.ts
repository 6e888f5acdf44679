import type { FastifyBaseLogger } from 'fastify';
import type { PlaneEvents } from '../services/plane-events.js';

/**
 * The log lines of the job plane: one info line per job end (with what a person asks first: who, what,
 * how it ended, how long it waited and ran), one per runner state change, a warning per lease that ran
 * out. Never a job's code, files, stdin or env: only ids, names and numbers.
 */
export function logPlaneEvents(log: FastifyBaseLogger, events: PlaneEvents): void {
  events.on((event) => {
    switch (event.type) {
      case 'job_ended':
        log.info(
          {
            job_id: event.jobId,
            tenant_id: event.tenantId,
            agent_id: event.agentId,
            language: event.language,
            status: event.status,
            verdict: event.verdict,
            queue_ms: event.queueMs,
            run_ms: event.runMs,
          },
          `job ended: ${event.verdict}`,
        );
        if (event.rejectedArtifacts > 0) {
          log.warn(
            { job_id: event.jobId, tenant_id: event.tenantId, rejected_artifacts: event.rejectedArtifacts },
            `dropped ${event.rejectedArtifacts} file(s) the job made: over the artifact limits (the job's rejected_artifacts names them)`,
          );
        }
        break;
      case 'runner_state': {
        const fields = { runner_id: event.runnerId, runner: event.name, from: event.from, to: event.to, reason: event.reason };
        const message = `runner ${event.name ?? event.runnerId} is ${event.to} (${event.reason})`;
        if (event.to === 'healthy') log.info(fields, message);
        else log.warn(fields, message);
        break;
      }
      case 'lease_expired':
        log.warn(
          { job_id: event.jobId, runner_id: event.runnerId, requeued: event.requeued },
          event.requeued ? 'lease expired: the job goes back to the queue' : 'lease expired: no attempt left, the job failed',
        );
        break;
      case 'job_requeued':
        log.info({ job_id: event.jobId, reason: event.reason }, 'job requeued');
        break;
      case 'lease_granted':
        log.debug({ job_id: event.jobId, runner_id: event.runnerId, attempt: event.attempt }, 'job leased');
        break;
    }
  });
}
