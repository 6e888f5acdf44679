import type { JobDeps } from '../job-deps.js';
import { startReaper } from '../reaper.js';
import { workflowsDueForAdvance } from '../../store/workflows.js';
import { advanceWorkflow, WorkflowWakes } from './engine.js';

/** Workflows advanced per page, and pages per pass: a pass stays bounded however many are open. */
const PAGE_SIZE = 100;
const MAX_PAGES_PER_PASS = 20;

/**
 * Finishes any advance a crash left half-done, or a job end no hook saw (a runner's work recovered on
 * its restart): each workflow due (workflowsDueForAdvance) is advanced again, in its own transaction.
 * An advance with nothing to do changes nothing, so running it twice, or on two replicas, is harmless.
 */
export async function sweepWorkflows(deps: JobDeps): Promise<number> {
  let after = '';
  let swept = 0;
  for (let pageNo = 0; pageNo < MAX_PAGES_PER_PASS; pageNo++) {
    const ids = await workflowsDueForAdvance(deps.store, after, PAGE_SIZE);
    for (const id of ids) {
      const wakes = new WorkflowWakes();
      await deps.store.transaction((tx) => advanceWorkflow(deps, tx, id, deps.clock.nowMs(), wakes));
      wakes.publish(deps);
      swept++;
    }
    if (ids.length < PAGE_SIZE) break;
    after = ids[ids.length - 1]!;
  }
  return swept;
}

/** Runs `sweepWorkflows` every `intervalMs` until stopped; errors are reported, never fatal. */
export function startWorkflowSweeper(deps: JobDeps, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  return startReaper(() => sweepWorkflows(deps), intervalMs, onError);
}
