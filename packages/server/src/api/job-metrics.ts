import { Counter, Histogram, type Registry } from 'prom-client';
import type { PlaneEvents } from '../services/plane-events.js';

/** Seconds from 10 ms to 10 minutes: queue waits and run times both spread over that range. */
const DURATION_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/**
 * Counters and histograms of what this replica saw happen (PlaneEvents): job ends by language and
 * verdict with their queue and run times, leases, lease expiries, requeues, runner heartbeats late.
 * Labels are bounded: languages come from the catalog, verdicts and states from enums; never an id.
 */
export function registerJobMetrics(registry: Registry, events: PlaneEvents): void {
  const queueWait = new Histogram({
    name: 'kiln_job_queue_wait_seconds',
    help: 'Time from submission to the first lease of jobs that ended, by language and verdict',
    labelNames: ['language', 'verdict'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [registry],
  });
  const runDuration = new Histogram({
    name: 'kiln_job_run_duration_seconds',
    help: 'Time from the first lease to the end of jobs that ended, by language and verdict',
    labelNames: ['language', 'verdict'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [registry],
  });
  const completed = new Counter({
    name: 'kiln_jobs_completed_total',
    help: 'Jobs that ended, by verdict (canceled jobs that never ran included)',
    labelNames: ['verdict'],
    registers: [registry],
  });
  const leases = new Counter({
    name: 'kiln_job_leases_total',
    help: 'Leases handed to runners (a job leased again after a requeue counts again), by language',
    labelNames: ['language'],
    registers: [registry],
  });
  const expiries = new Counter({ name: 'kiln_job_lease_expiries_total', help: 'Leases that ran out without a heartbeat', registers: [registry] });
  const requeues = new Counter({
    name: 'kiln_job_requeues_total',
    help: 'Jobs put back in the queue for another attempt, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const late = new Counter({
    name: 'kiln_runner_heartbeats_late_total',
    help: 'Times a runner\'s heartbeat came late enough to mark it degraded (or offline)',
    labelNames: ['to'],
    registers: [registry],
  });
  const runnerChanges = new Counter({
    name: 'kiln_runner_state_changes_total',
    help: 'Runner state changes, by new state',
    labelNames: ['to'],
    registers: [registry],
  });
  // Egress of sandboxes under an allowlist, as their runners reported it (the summary of a job's report,
  // of a session's or a service's teardown). Labels are enums: never a host, which the audit names.
  const egressConnections = new Counter({
    name: 'kiln_egress_connections_total',
    help: 'Egress connections of sandboxes, by sandbox kind and outcome (allowed, denied, failed: allowed but unreachable)',
    labelNames: ['sandbox', 'outcome'],
    registers: [registry],
  });
  const egressBytes = new Counter({
    name: 'kiln_egress_bytes_total',
    help: 'Egress bytes of sandboxes, by sandbox kind and direction (sent to hosts, received from them)',
    labelNames: ['sandbox', 'direction'],
    registers: [registry],
  });
  const egressDenials = new Counter({
    name: 'kiln_egress_denials_total',
    help: 'Refused egress connections of sandboxes, by sandbox kind and reason (of the denial groups a report carries: at most 64 a sandbox)',
    labelNames: ['sandbox', 'reason'],
    registers: [registry],
  });
  // Every language label comes from the runners' catalog, but a hostile runner registers what it likes: cap it.
  const boundedLanguage = (language: string) => (/^[a-z0-9+#_-]{1,32}$/.test(language) ? language : 'other');

  events.on((event) => {
    switch (event.type) {
      case 'job_ended': {
        const labels = { language: boundedLanguage(event.language), verdict: event.verdict };
        completed.inc({ verdict: event.verdict });
        if (event.queueMs !== null) queueWait.observe(labels, event.queueMs / 1000);
        if (event.runMs !== null) runDuration.observe(labels, event.runMs / 1000);
        break;
      }
      case 'lease_granted':
        leases.inc({ language: boundedLanguage(event.language) });
        break;
      case 'lease_expired':
        expiries.inc();
        break;
      case 'job_requeued':
        requeues.inc({ reason: event.reason });
        break;
      case 'runner_state':
        runnerChanges.inc({ to: event.to });
        if (event.to === 'degraded' || (event.to === 'offline' && event.from === 'healthy')) late.inc({ to: event.to });
        break;
      case 'egress': {
        const { sandbox, summary } = event;
        egressConnections.inc({ sandbox, outcome: 'allowed' }, summary.connections_allowed);
        egressConnections.inc({ sandbox, outcome: 'denied' }, summary.connections_denied);
        egressConnections.inc({ sandbox, outcome: 'failed' }, summary.connections_failed);
        egressBytes.inc({ sandbox, direction: 'sent' }, summary.bytes_sent);
        egressBytes.inc({ sandbox, direction: 'received' }, summary.bytes_received);
        for (const d of summary.denied) egressDenials.inc({ sandbox, reason: d.reason }, d.count);
        break;
      }
    }
  });
}
