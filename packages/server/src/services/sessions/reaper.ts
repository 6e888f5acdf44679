import { endedSessionsWithLiveSandbox, idleSince, sessionsDue } from '../../store/sessions.js';
import type { JobDeps } from '../job-deps.js';
import { startReaper } from '../reaper.js';
import { destroySessionSandbox, endSessionsFor } from './lifecycle.js';
import { failOrphanedSteps } from './steps.js';

/** Sessions ended per pass, and sandboxes destroyed: a backlog drains over a few passes. */
const BATCH = 100;

/**
 * One pass of the SessionReaper (issue 8, point 2): active sessions past `expires_at` (→ expired, ttl) or
 * idle past their `idle_timeout_seconds` (→ expired, idle), each audited; then every ended session whose
 * sandbox is still live on its runner (deleted, suspended, disabled, expired) has it destroyed, and
 * steps whose driving replica died are failed (failOrphanedSteps). Time is
 * the deps' clock, so tests drive it with a ManualClock.
 */
export async function sessionReaperPass(
  deps: JobDeps,
  orphanSuspects: Map<string, number> = new Map(),
): Promise<{ expired: number; destroyed: number; orphanedSteps: number }> {
  const nowMs = deps.clock.nowMs();
  const due = await sessionsDue(deps.store, nowMs, BATCH);
  let expired = 0;
  if (due.length > 0) {
    expired = await deps.store.transaction(async (tx) => {
      const byTtl = due.filter((s) => Date.parse(s.expires_at) <= nowMs);
      const byIdle = due.filter((s) => Date.parse(s.expires_at) > nowMs && idleSince(s, nowMs));
      return (
        (await endSessionsFor(tx, byTtl, 'ttl', 'session-reaper', nowMs)) +
        (await endSessionsFor(tx, byIdle, 'idle', 'session-reaper', nowMs))
      );
    });
  }
  let destroyed = 0;
  for (const live of await endedSessionsWithLiveSandbox(deps.store, BATCH)) {
    const ok = await destroySessionSandbox(
      deps,
      { id: live.session_id, sandbox_id: live.sandbox_id },
      { id: live.runner_id, address: live.address, signing_key: live.signing_key },
    );
    if (ok) destroyed++;
  }
  const orphanedSteps = await failOrphanedSteps(deps, orphanSuspects);
  return { expired, destroyed, orphanedSteps };
}

export function startSessionReaper(deps: JobDeps, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  const orphanSuspects = new Map<string, number>();
  return startReaper(() => sessionReaperPass(deps, orphanSuspects), intervalMs, onError);
}
