import type { StoppedWorkResult } from '../store/owner-work.js';
import type { ServiceDeps } from './context.js';
import { topics } from './notifier.js';

/**
 * After a suspension or a disable commits: each runner holding a stopped job is woken, so its heartbeat
 * (a long poll) answers `stop: canceled` now and the sandbox is killed within milliseconds; and lease
 * polls look again, since the stopped jobs no longer count against their tenant's cap.
 */
export function announceStoppedWork(deps: ServiceDeps, stopped: StoppedWorkResult): void {
  if (!deps.notifier) return;
  for (const runnerId of stopped.runnerIds) deps.notifier.publish(topics.runner(runnerId));
  if (stopped.effects.stopped_jobs > 0) deps.notifier.publish(topics.work);
}
