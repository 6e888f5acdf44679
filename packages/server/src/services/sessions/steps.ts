import { EventEmitter } from 'node:events';
import {
  INLINE_OUTPUT_MAX_BYTES,
  KilnError,
  toRfc3339,
  DEFAULT_RULESET,
  type CreateStepRequest,
  type RejectedArtifact,
  type SessionStep,
} from '@kiln/core';
import { sessionStepMachine } from '../../domain/machines.js';
import { assertTransition } from '../../domain/state-machine.js';
import { touchSession, type SessionRow } from '../../store/sessions.js';
import { appendSessionStep, type SessionStepRow } from '../../store/steps.js';
import type { DbHandle } from '../../store/store.js';
import { appendAuditEvent } from '../../store/audit.js';
import { auditSuccess } from '../audit.js';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { activeSessionEndpoint, loadVisibleSession } from './lifecycle.js';
import { callRunner, callRunnerJson, ndjsonLines, type RunnerEndpoint } from './runner-link.js';
import { collectRefusedStepBlobs, recordStepArtifacts, storeCollectedFile, storeSmallBlobs, StepOutputBlob, type StepBlob } from './step-artifacts.js';

type StepState = (typeof sessionStepMachine.states)[number];

/** What a live step's watchers receive (this replica's steps). */
export type StepEvent =
  | { type: 'output'; stream: 'stdout' | 'stderr'; data: string }
  | { type: 'status'; status: StepState }
  | { type: 'end'; step: SessionStep };

/** Output a live step keeps for watchers that join after it started (per step, this replica). */
const HISTORY_MAX_BYTES = 1024 * 1024;

/**
 * A live step's events: emitted to watchers, and kept (bounded) so a watcher that joins late gets
 * what it missed first; past the bound, late watchers get a `truncated` mark and the rest.
 */
export class LiveStep extends EventEmitter {
  readonly history: StepEvent[] = [];
  historyBytes = 0;
  historyCut = false;

  record(event: StepEvent): void {
    if (event.type === 'output') {
      if (this.historyBytes + event.data.length > HISTORY_MAX_BYTES) this.historyCut = true;
      else {
        this.history.push(event);
        this.historyBytes += event.data.length;
      }
    }
    this.emit('event', event);
  }
}

/** Live steps of this replica, for event streams: one per step while it runs. */
export class StepEvents {
  private readonly live = new Map<string, LiveStep>();

  open(stepId: string): LiveStep {
    const e = new LiveStep();
    e.setMaxListeners(0);
    this.live.set(stepId, e);
    return e;
  }

  get(stepId: string): LiveStep | undefined {
    return this.live.get(stepId);
  }

  close(stepId: string): void {
    this.live.delete(stepId);
  }
}

export function stepFromRow(row: SessionStepRow): SessionStep {
  const spec = row.spec ? (JSON.parse(row.spec) as { background?: boolean }) : {};
  return {
    id: row.id,
    session_id: row.session_id,
    sequence: row.sequence,
    command: JSON.parse(row.command) as string | string[],
    status: row.status as StepState,
    background: spec.background === true,
    created_at: row.created_at,
    started_at: row.started_at,
    completed_at: row.completed_at,
    exit_status: row.exit_status ? JSON.parse(row.exit_status) : null,
    resource_usage: row.resource_usage ? JSON.parse(row.resource_usage) : null,
    verdict: (row.verdict as SessionStep['verdict']) ?? null,
    stdout: row.stdout_inline,
    stderr: row.stderr_inline,
    error: row.error,
    ...stepOutputRefs(row.output_refs),
  };
}

/** `output_refs` holds the step's artifact ids and the files refused, recorded when it ended. */
function stepOutputRefs(text: string | null): Pick<SessionStep, 'output_refs' | 'rejected_artifacts'> {
  if (!text) return { output_refs: null, rejected_artifacts: [] };
  const stored = JSON.parse(text) as { stdout: string | null; stderr: string | null; artifacts: string[]; rejected_artifacts?: SessionStep['rejected_artifacts'] };
  return {
    output_refs: { stdout: stored.stdout, stderr: stored.stderr, artifacts: stored.artifacts },
    rejected_artifacts: stored.rejected_artifacts ?? [],
  };
}

async function loadStep(deps: JobDeps, sessionId: string, sequence: number): Promise<SessionStepRow> {
  const row = await deps.store.db
    .selectFrom('session_steps')
    .selectAll()
    .where('session_id', '=', sessionId)
    .where('sequence', '=', sequence)
    .executeTakeFirst();
  if (!row) throw new KilnError('NOT_FOUND', `session ${sessionId} has no step ${sequence}`);
  return row;
}

async function moveStep(h: DbHandle, row: SessionStepRow, to: StepState, fields: Partial<SessionStepRow>): Promise<SessionStepRow> {
  assertTransition(sessionStepMachine, row.status as StepState, to, row.id);
  await h.db
    .updateTable('session_steps')
    .set({ ...fields, status: to })
    .where('id', '=', row.id)
    .where('status', '=', row.status)
    .execute();
  return { ...row, ...fields, status: to };
}

/** Both output streams stored: a large one is already, small ones go together (one transaction). */
async function finishOutputs(deps: JobDeps, tenantId: string, stepId: string, blobs: [StepOutputBlob, StepOutputBlob]) {
  const finished = await Promise.all(blobs.map(async (b) => ({ name: b.name, end: await b.finish() })));
  const small = finished.flatMap((f) => ('small' in f.end ? [{ name: f.name, content: f.end.small }] : []));
  const stored = await storeSmallBlobs(deps, tenantId, stepId, small);
  const pick = (name: string): StepBlob | undefined => {
    const f = finished.find((x) => x.name === name)!;
    return 'stored' in f.end ? f.end.stored : stored[small.findIndex((s) => s.name === name)];
  };
  return { stdout: pick('stdout'), stderr: pick('stderr') };
}

/** The artifact rules of the session's policy, pinned in its seed when it was created. */
function sessionArtifactRules(session: SessionRow) {
  const seed = session.seed ? (JSON.parse(session.seed) as { artifacts?: typeof DEFAULT_RULESET.artifacts }) : {};
  return seed.artifacts ?? DEFAULT_RULESET.artifacts;
}

/** Output kept inline: up to INLINE_OUTPUT_MAX_BYTES per stream. */
class InlineOutput {
  private readonly parts: Buffer[] = [];
  private size = 0;
  truncated = false;

  push(chunk: Buffer): void {
    const room = INLINE_OUTPUT_MAX_BYTES - this.size;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const part = chunk.subarray(0, room);
    this.parts.push(part);
    this.size += part.length;
  }

  /**
   * UTF-8 text, as invalid bytes already become U+FFFD; so does NUL, which PostgreSQL text cannot hold
   * (the stdout and stderr artifacts keep the exact bytes).
   */
  text(): string {
    return Buffer.concat(this.parts).toString('utf8').replaceAll('\0', '\uFFFD');
  }
}

/**
 * Submits a step (issue 8, point 3): the next sequence in the session's transaction (1, 2, 3… under
 * concurrent submits too), queued → running on the runner that holds the sandbox, and answered when it
 * ends (bounded by the fleet's max wait) or at once with `background`.
 */
export async function submitStep(
  deps: JobDeps,
  events: StepEvents,
  principal: Principal,
  sessionId: string,
  input: CreateStepRequest,
): Promise<SessionStep> {
  const { row: session, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const nowMs = deps.clock.nowMs();
  const running = await deps.store.transaction(async (tx) => {
    const step = await appendSessionStep(tx, {
      sessionId,
      command: JSON.stringify(input.command),
      nowMs,
      spec: {
        env: input.env ?? {},
        cwd: input.cwd ?? null,
        timeout_ms: input.timeout_ms ?? null,
        background: input.background,
        collect: input.collect ?? [],
      },
    });
    await touchSession(tx, sessionId, nowMs);
    await auditSuccess(deps, tx, principal, {
      action: 'session.step',
      resource_type: 'session',
      resource_id: sessionId,
      subject_agent_id: session.agent_id,
      details: { sequence: step.sequence, background: input.background },
    });
    // queued → running in the same commit: the runner is called right after it.
    return moveStep(tx, step, 'running', { started_at: toRfc3339(deps.clock.nowMs()) });
  });
  const emitter = events.open(running.id);
  emitter.record({ type: 'status', status: 'running' });
  let started!: () => void;
  const onRunner = new Promise<void>((resolve) => (started = resolve));
  const finished = driveStep(deps, runner, session, running, input, emitter, started).finally(() => events.close(running.id));
  // A background step answers once the runner runs it, so stdin and kill sent next find it there.
  if (input.background) {
    await Promise.race([onRunner, finished]);
    return stepFromRow(running);
  }
  const waited = await Promise.race([finished, new Promise<undefined>((r) => setTimeout(() => r(undefined), deps.fleet.maxWaitMs).unref())]);
  return stepFromRow(waited ?? running);
}

/** One line of a runner's answer to a step (session-host.ts): output, a collected file, the end, an error. */
interface StepLine {
  type: string;
  data?: string;
  name?: string;
  message?: string;
  verdict?: string;
  exit_status?: unknown;
  resource_usage?: unknown;
  rejected_artifacts?: RejectedArtifact[];
  collect_stopped?: string;
}

/** Runs the step on the runner, streaming its NDJSON answer into the watchers, and records the end. */
async function driveStep(
  deps: JobDeps,
  runner: RunnerEndpoint,
  session: SessionRow,
  step: SessionStepRow,
  input: CreateStepRequest,
  emitter: LiveStep,
  started: () => void,
): Promise<SessionStepRow> {
  const stdout = new InlineOutput();
  const stderr = new InlineOutput();
  const stdoutBlob = new StepOutputBlob(deps, session.tenant_id, step.id, 'stdout');
  const stderrBlob = new StepOutputBlob(deps, session.tenant_id, step.id, 'stderr');
  const collected: StepBlob[] = [];
  let end: { verdict: string; exit_status: unknown; resource_usage: unknown; rejected_artifacts?: RejectedArtifact[]; collect_stopped?: string } | undefined;
  let failure: string | undefined;
  try {
    const res = await callRunner(
      runner,
      'POST',
      `/v1/sessions/${step.session_id}/steps`,
      {
        sequence: step.sequence,
        command: input.command,
        ...(input.stdin !== undefined ? { stdin: input.stdin } : {}),
        ...(input.env ? { env: input.env } : {}),
        ...(input.cwd ? { cwd: input.cwd } : {}),
        ...(input.timeout_ms ? { timeout_ms: input.timeout_ms } : {}),
        // A background step keeps its stdin open for POST …/steps/{sequence}/stdin.
        stdin_open: input.background,
        ...(input.collect?.length ? { collect: input.collect, artifacts: sessionArtifactRules(session) } : {}),
      },
      // A step may run long; its own timeout (or the policy's wall time) ends it on the runner.
      { timeoutMs: 25 * 3600 * 1000 },
    );
    started();
    for await (const msg of ndjsonLines<StepLine>(res)) {
      if (msg.type === 'stdout' || msg.type === 'stderr') {
        const bytes = Buffer.from(msg.data ?? '', 'base64');
        (msg.type === 'stdout' ? stdout : stderr).push(bytes);
        (msg.type === 'stdout' ? stdoutBlob : stderrBlob).push(bytes);
        emitter.record({ type: 'output', stream: msg.type, data: bytes.toString('utf8') });
      } else if (msg.type === 'artifact' && typeof msg.name === 'string') {
        collected.push(await storeCollectedFile(deps, session.tenant_id, step.id, msg.name, Buffer.from(msg.data ?? '', 'base64')));
      } else if (msg.type === 'end') {
        end = {
          verdict: msg.verdict!,
          exit_status: msg.exit_status,
          resource_usage: msg.resource_usage,
          ...(msg.rejected_artifacts ? { rejected_artifacts: msg.rejected_artifacts } : {}),
          ...(msg.collect_stopped ? { collect_stopped: msg.collect_stopped } : {}),
        };
      } else if (msg.type === 'error') {
        failure = msg.message ?? 'the runner could not run the step';
      }
    }
  } catch (err) {
    failure = (err as Error).message;
  }
  const outputs = await finishOutputs(deps, session.tenant_id, step.id, [stdoutBlob, stderrBlob]);
  let leftOver = false;
  const done = await deps.store.transaction(async (tx) => {
    const recorded = await recordStepArtifacts(deps, tx, { tenantId: session.tenant_id, stepId: step.id }, outputs, collected, end?.rejected_artifacts ?? []);
    leftOver = recorded.leftOver;
    // The step's end is activity too, in the same commit.
    await touchSession(tx, step.session_id, deps.clock.nowMs());
    const fields: Partial<SessionStepRow> = {
      completed_at: toRfc3339(deps.clock.nowMs()),
      stdout_inline: stdout.text(),
      stderr_inline: stderr.text(),
      output_refs: JSON.stringify({ ...recorded.refs, rejected_artifacts: recorded.rejected }),
    };
    if (end) {
      const status: StepState = end.verdict === 'ok' ? 'succeeded' : end.verdict === 'canceled' ? 'canceled' : 'failed';
      return moveStep(tx, step, status, {
        ...fields,
        verdict: end.verdict,
        exit_status: JSON.stringify(end.exit_status),
        resource_usage: JSON.stringify(end.resource_usage),
        // A collection a bound stopped keeps what it found and says why (as a job's does).
        ...(end.collect_stopped ? { error: end.collect_stopped } : {}),
      });
    }
    return moveStep(tx, step, 'failed', { ...fields, verdict: 'system_error', error: failure ?? 'the runner ended the step without a result' });
  });
  if (leftOver) await collectRefusedStepBlobs(deps, step.id).catch(() => {});
  emitter.record({ type: 'end', step: stepFromRow(done) });
  return done;
}

/** How long a watcher waits for the replica that ran a step to record its end, after the runner ended it. */
const PERSISTED_END_WAIT_MS = 30_000;
/** Tries (25 ms apart) to find a step on its runner that the database already says runs. */
const RUNNER_START_RETRIES = 40;

/** What a watcher on a replica that does not run the step gets from the runner. */
export type RemoteStepEvent = { type: 'output'; stream: 'stdout' | 'stderr'; data: string } | { type: 'truncated'; reason: string };

/**
 * Live events of a step another replica runs (issue 8, point 6: any replica serves any session): the
 * runner that holds it streams its output (signed call, as every session call), and once it ends the
 * step is read back as the running replica records it. Resolves to the ended step (or, if that replica
 * never records it in time, the step as it stands), and whether any output came from the runner.
 */
export async function relayStepFromRunner(
  deps: JobDeps,
  principal: Principal,
  sessionId: string,
  sequence: number,
  onEvent: (e: RemoteStepEvent) => void,
  signal: AbortSignal,
): Promise<{ step: SessionStep; relayed: boolean }> {
  const { runner } = await activeSessionEndpoint(deps, principal, sessionId);
  let relayed = false;
  for (let attempt = 0; !relayed && !signal.aborted; attempt++) {
    try {
      const res = await callRunner(runner, 'GET', `/v1/sessions/${sessionId}/steps/${sequence}/events`, undefined, {
        signal,
        timeoutMs: 25 * 3600 * 1000,
      });
      relayed = true;
      for await (const msg of ndjsonLines<{ type: string; data?: string; reason?: string }>(res)) {
        if (msg.type === 'stdout' || msg.type === 'stderr') {
          onEvent({ type: 'output', stream: msg.type, data: Buffer.from(msg.data ?? '', 'base64').toString('utf8') });
        } else if (msg.type === 'truncated') onEvent({ type: 'truncated', reason: msg.reason ?? 'history_limit' });
      }
    } catch (err) {
      if (!(err instanceof KilnError && err.code === 'NOT_FOUND') || signal.aborted) throw err;
      // Not running there: not yet (the runner is about to start it) or no more (it just ended).
      const now = await getStep(deps, principal, sessionId, sequence);
      if (now.status !== 'running' || attempt >= RUNNER_START_RETRIES) break;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const deadline = Date.now() + PERSISTED_END_WAIT_MS;
  let step = await getStep(deps, principal, sessionId, sequence);
  while ((step.status === 'running' || step.status === 'queued') && Date.now() < deadline && !signal.aborted) {
    await new Promise((r) => setTimeout(r, 25));
    step = await getStep(deps, principal, sessionId, sequence);
  }
  return { step, relayed };
}

/** A running step this old whose runner does not run it, seen so twice this far apart, is orphaned. */
const ORPHAN_MIN_AGE_MS = 5_000;
const ORPHAN_CONFIRM_MS = 5_000;

/**
 * Steps whose driving replica died (a crash mid-step): the runner killed them when that replica's
 * connection closed, but their row still says running. A step is failed (system_error, audited) once
 * its session has ended or its runner has said twice, ORPHAN_CONFIRM_MS apart, that it does not run it:
 * a live driver records a step's end within milliseconds of the runner ending it. `suspects` carries
 * the first sighting between passes.
 */
export async function failOrphanedSteps(deps: JobDeps, suspects: Map<string, number>, limit = 50): Promise<number> {
  const nowMs = deps.clock.nowMs();
  const rows = await deps.store.db
    .selectFrom('session_steps as st')
    .innerJoin('sessions as s', 's.id', 'st.session_id')
    .leftJoin('runner_nodes as r', 'r.id', 's.runner_id')
    .select(['st.id', 'st.sequence', 'st.session_id', 's.status as session_status', 's.tenant_id', 's.agent_id', 'r.id as runner_id', 'r.address', 'r.signing_key'])
    .where('st.status', '=', 'running')
    .where('st.started_at', '<', toRfc3339(nowMs - ORPHAN_MIN_AGE_MS))
    .orderBy('st.started_at')
    .limit(limit)
    .execute();
  const seen = new Set(rows.map((r) => r.id));
  for (const id of suspects.keys()) if (!seen.has(id)) suspects.delete(id);
  let failed = 0;
  for (const row of rows) {
    let orphaned = row.session_status !== 'active';
    if (!orphaned && row.runner_id) {
      const probe = await callRunnerJson<{ running: boolean }>(
        { id: row.runner_id, address: row.address, signing_key: row.signing_key },
        'GET',
        `/v1/sessions/${row.session_id}/steps/${row.sequence}`,
        undefined,
      ).catch(() => undefined);
      if (probe?.running !== false) {
        suspects.delete(row.id);
        continue;
      }
      const first = suspects.get(row.id);
      if (first === undefined) suspects.set(row.id, nowMs);
      orphaned = first !== undefined && nowMs - first >= ORPHAN_CONFIRM_MS;
    }
    if (!orphaned) continue;
    suspects.delete(row.id);
    const moved = await deps.store.transaction(async (tx) => {
      const step = await tx.db.selectFrom('session_steps').selectAll().where('id', '=', row.id).executeTakeFirst();
      if (!step || step.status !== 'running') return false;
      await moveStep(tx, step, 'failed', {
        completed_at: toRfc3339(nowMs),
        verdict: 'system_error',
        error: 'the control-plane replica that ran this step stopped before it ended; the runner ended it',
      });
      await appendAuditEvent(
        tx,
        {
          tenant_id: row.tenant_id,
          actor_id: 'session-reaper',
          action: 'session.step_fail',
          resource_type: 'session',
          resource_id: row.session_id,
          outcome: 'success',
          details: { actor_kind: 'system', sequence: row.sequence, reason: 'driver_lost' },
          subject_agent_id: row.agent_id,
        },
        nowMs,
      );
      return true;
    });
    if (moved) failed++;
  }
  return failed;
}

export async function getStep(deps: JobDeps, principal: Principal, sessionId: string, sequence: number): Promise<SessionStep> {
  await loadVisibleSession(deps.store, principal, sessionId);
  return stepFromRow(await loadStep(deps, sessionId, sequence));
}

/** The persisted transcript, by sequence. */
export async function listSteps(
  deps: JobDeps,
  principal: Principal,
  sessionId: string,
  query: { limit: number; after_sequence?: number | undefined },
) {
  await loadVisibleSession(deps.store, principal, sessionId);
  const rows = await deps.store.db
    .selectFrom('session_steps')
    .selectAll()
    .where('session_id', '=', sessionId)
    .where('sequence', '>', query.after_sequence ?? 0)
    .orderBy('sequence')
    .limit(query.limit + 1)
    .execute();
  const items = rows.slice(0, query.limit).map(stepFromRow);
  return { items, next_cursor: rows.length > query.limit ? String(items.at(-1)!.sequence) : null };
}

/** `POST …/steps/{sequence}/kill`: the runner kills the step's process group; the step ends canceled. */
export async function killStep(deps: JobDeps, principal: Principal, sessionId: string, sequence: number): Promise<SessionStep> {
  const { row: session, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const step = await loadStep(deps, sessionId, sequence);
  if (step.status === 'running') {
    await callRunner(runner, 'POST', `/v1/sessions/${sessionId}/steps/${sequence}/kill`, {});
  }
  await deps.store.transaction((tx) =>
    auditSuccess(deps, tx, principal, {
      action: 'session.step_kill',
      resource_type: 'session',
      resource_id: sessionId,
      subject_agent_id: session.agent_id,
      details: { sequence },
    }),
  );
  await touchSession(deps.store, sessionId, deps.clock.nowMs());
  return stepFromRow(await loadStep(deps, sessionId, sequence));
}

/** `POST …/steps/{sequence}/stdin`: more input for a running background step; `eof` closes its stdin. */
export async function writeStepStdin(
  deps: JobDeps,
  principal: Principal,
  sessionId: string,
  sequence: number,
  input: { data: string; eof: boolean },
): Promise<{ written_bytes: number }> {
  const { row: session, runner } = await activeSessionEndpoint(deps, principal, sessionId);
  const step = await loadStep(deps, sessionId, sequence);
  if (step.status !== 'running') {
    throw new KilnError('INVALID_TRANSITION', `step ${sequence} is ${step.status}; stdin goes only to a running step`, {
      extra: { entity: 'session_step', from: step.status },
    });
  }
  await callRunner(runner, 'POST', `/v1/sessions/${sessionId}/steps/${sequence}/stdin`, input);
  await deps.store.transaction(async (tx) => {
    await touchSession(tx, sessionId, deps.clock.nowMs());
    await auditSuccess(deps, tx, principal, {
      action: 'session.step_stdin',
      resource_type: 'session',
      resource_id: sessionId,
      subject_agent_id: session.agent_id,
      details: { sequence, bytes: Buffer.byteLength(input.data), eof: input.eof },
    });
  });
  return { written_bytes: Buffer.byteLength(input.data) };
}
