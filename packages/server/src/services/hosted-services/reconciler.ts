import { appendAuditEvent } from '../../store/audit.js';
import { endedServicesWithLiveSandbox, liveServices, moveService, setServiceRestarts, type ServiceRow } from '../../store/services.js';
import type { JobDeps } from '../job-deps.js';
import { startReaper } from '../reaper.js';
import { callRunnerJson } from '../sessions/runner-link.js';
import { runnerEndpoint } from '../sessions/lifecycle.js';
import { destroyServiceSandbox, endServicesFor } from './lifecycle.js';

/** Services looked at per pass, and sandboxes destroyed: a backlog drains over a few passes. */
const BATCH = 500;
const ACTOR = 'service-reconciler';

/** What a runner says of one of its services (`GET /v1/services` on its endpoint). */
interface RunnerServiceState {
  service_id: string;
  state: 'starting' | 'running' | 'ended';
  reason: 'crashed' | 'exited' | 'readiness_timeout' | null;
  restarts: number;
  last_exit: { code: number | null; signal: number | null } | null;
}

/**
 * One pass of the service reconciler: live services past their TTL end (ttl); for the rest, each runner
 * holding some is asked how they are, and what it says moves them along the transition table (running
 * once ready; terminated when crashed after its restarts, exited, or not ready in time), each change
 * audited once whichever replica sees it first. A runner that does not answer is left to the fleet
 * reaper (runner_lost). Then every ended service whose sandbox is still live has it destroyed.
 */
export async function serviceReconcilerPass(deps: JobDeps): Promise<{ changed: number; destroyed: number }> {
  const nowMs = deps.clock.nowMs();
  const live = await liveServices(deps.store, BATCH);
  let changed = 0;
  const expired = live.filter((s) => s.expires_at !== null && Date.parse(s.expires_at) <= nowMs);
  if (expired.length) changed += await deps.store.transaction((tx) => endServicesFor(tx, expired, 'ttl', ACTOR, nowMs));
  const byRunner = new Map<string, ServiceRow[]>();
  for (const s of live) {
    if (expired.includes(s) || !s.runner_id) continue;
    byRunner.set(s.runner_id, [...(byRunner.get(s.runner_id) ?? []), s]);
  }
  for (const [runnerId, rows] of byRunner) {
    let states: RunnerServiceState[];
    try {
      const runner = await runnerEndpoint(deps.store, runnerId);
      states = (await callRunnerJson<{ services: RunnerServiceState[] }>(runner, 'GET', '/v1/services', undefined)).services;
    } catch {
      continue;
    }
    const known = new Map(states.map((s) => [s.service_id, s]));
    for (const row of rows) changed += await applyRunnerState(deps, row, known.get(row.id));
  }
  let destroyed = 0;
  for (const s of await endedServicesWithLiveSandbox(deps.store, BATCH)) {
    const ok = await destroyServiceSandbox(deps, { id: s.service_id, sandbox_id: s.sandbox_id }, { id: s.runner_id, address: s.address, signing_key: s.signing_key });
    if (ok) destroyed++;
  }
  return { changed, destroyed };
}

async function applyRunnerState(deps: JobDeps, row: ServiceRow, state: RunnerServiceState | undefined): Promise<number> {
  const nowMs = deps.clock.nowMs();
  if (!state) {
    // Started (its sandbox row says so) yet unknown to its runner: the runner restarted and lost it.
    const sandbox = await deps.store.db.selectFrom('sandbox_instances').select('status').where('id', '=', row.sandbox_id ?? '').executeTakeFirst();
    if (sandbox?.status !== 'running') return 0;
    return deps.store.transaction((tx) => endServicesFor(tx, [row], 'runner_lost', ACTOR, nowMs));
  }
  let changed = 0;
  if (state.restarts > (row.restarts ?? 0)) {
    await deps.store.transaction(async (tx) => {
      await setServiceRestarts(tx, row.id, state.restarts);
      await appendAuditEvent(
        tx,
        {
          tenant_id: row.tenant_id,
          actor_id: ACTOR,
          action: 'service.restart',
          resource_type: 'service',
          resource_id: row.id,
          outcome: 'success',
          details: { actor_kind: 'system', restarts: state.restarts, last_exit: state.last_exit },
          subject_agent_id: row.agent_id,
        },
        nowMs,
      );
    });
    changed++;
  }
  if (state.state === 'running' && row.status === 'starting') {
    changed += await deps.store.transaction(async (tx) => {
      if (!(await moveService(tx, row.id, 'running', nowMs))) return 0;
      await appendAuditEvent(
        tx,
        {
          tenant_id: row.tenant_id,
          actor_id: ACTOR,
          action: 'service.running',
          resource_type: 'service',
          resource_id: row.id,
          outcome: 'success',
          details: { actor_kind: 'system', port: row.port },
          subject_agent_id: row.agent_id,
        },
        nowMs,
      );
      return 1;
    });
  }
  if (state.state === 'ended') {
    const reason = state.reason === 'readiness_timeout' ? 'readiness_timeout' : state.reason === 'exited' ? 'exited' : 'crashed';
    changed += await deps.store.transaction((tx) => endServicesFor(tx, [row], reason, ACTOR, nowMs, { restarts: state.restarts, last_exit: state.last_exit }));
  }
  return changed;
}

export function startServiceReconciler(deps: JobDeps, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  return startReaper(() => serviceReconcilerPass(deps), intervalMs, onError);
}
