import { toRfc3339, type Clock } from '@kiln/core';
import { checkpointSignatureValid, signCheckpoint } from '../domain/audit-chain.js';
import { findChainEvent, firstKeyedSeq, listChainHeads } from '../store/audit.js';
import type { Store } from '../store/store.js';
import { eventHashHolds } from './audit.js';

/** What one checkpoint pass did: chains whose checkpoint moved forward, and what it refused to sign. */
export interface CheckpointPass {
  written: number;
  /** chains found truncated or rewritten since their last checkpoint (the checkpoint is kept, never rolled back) */
  problems: string[];
}

/**
 * Signs each chain's current head into the checkpoint log, only ever forward: a head below its last
 * checkpoint, or a chain whose event at the checkpointed place changed, is reported and left as it was,
 * so a database writer's truncation stays visible to `verify`. A head whose newest event does not match
 * its hash is not signed either.
 */
export async function checkpointAuditChains(store: Store, nowMs: number): Promise<CheckpointPass> {
  const { key, checkpoints } = store.audit;
  const kept = checkpoints.read();
  const next = { ...kept };
  const problems: string[] = [];
  let written = 0;
  const heads = await listChainHeads(store);
  if (!checkpoints.exists()) {
    if (heads.some((h) => h.last_seq > 0)) {
      // Expected once, on the first start after upgrading or with a new file; otherwise the file was lost.
      problems.push(
        `no audit checkpoints in ${checkpoints.location} for ${heads.length} existing chains: truncation before now cannot be detected; checkpointing starts now`,
      );
    } else {
      // A new data dir: the log starts with it, so later passes know no earlier event went unanchored.
      checkpoints.write({});
    }
  }
  for (const head of heads) {
    const chain = head.chain_id;
    const previous = kept[chain];
    if (previous && previous.seq === head.last_seq && previous.hash === head.last_hash) continue;
    if (previous && !checkpointSignatureValid(key, previous)) {
      problems.push(`audit chain ${chain}: its checkpoint is not signed with the configured audit key`);
      continue;
    }
    if (previous && head.last_seq < previous.seq) {
      problems.push(`audit chain ${chain} has ${head.last_seq} events, fewer than the ${previous.seq} of its checkpoint: it was truncated`);
      continue;
    }
    if (previous && (await findChainEvent(store, chain, previous.seq))?.hash !== previous.hash) {
      problems.push(`audit chain ${chain}: event ${previous.seq} differs from its checkpoint: it was rewritten`);
      continue;
    }
    const newest = await findChainEvent(store, chain, head.last_seq);
    if (!newest || newest.hash !== head.last_hash || !eventHashHolds(key, newest)) {
      problems.push(`audit chain ${chain}: its newest event does not match its hash; not checkpointed`);
      continue;
    }
    const keyedFromSeq = previous?.keyed_from_seq ?? (newest.hmac_key_id === null ? null : await firstKeyedSeq(store, chain));
    next[chain] = signCheckpoint(key, {
      chain_id: chain,
      seq: head.last_seq,
      hash: head.last_hash,
      keyed_from_seq: keyedFromSeq,
      at: toRfc3339(nowMs),
    });
    written += 1;
  }
  const present = new Set(heads.map((h) => h.chain_id));
  for (const chain of Object.keys(kept)) {
    if (!present.has(chain)) problems.push(`audit chain ${chain} has a checkpoint but is gone from the database`);
  }
  if (written > 0) checkpoints.write(next);
  return { written, problems };
}

/**
 * Checkpoints every `intervalMs` (passes never overlap) and once more when stopped. Events written since
 * the last pass are covered by their HMACs but not yet by a checkpoint: the interval is how much of the
 * tail a database writer could cut unnoticed.
 */
export function startAuditCheckpointer(
  deps: { store: Store; clock: Clock },
  intervalMs: number,
  report: { problem(message: string): void; error(err: unknown): void },
): () => Promise<void> {
  let running: Promise<void> | undefined;
  const seen = new Set<string>();
  const pass = () => {
    running ??= checkpointAuditChains(deps.store, deps.clock.nowMs())
      .then((result) => {
        for (const problem of result.problems) {
          // Said once per process: the same truncation is found again on every pass.
          if (!seen.has(problem) && seen.size < 10_000) report.problem(problem);
          seen.add(problem);
        }
      })
      .catch(report.error)
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  void pass();
  const timer = setInterval(() => void pass(), intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
    await pass();
  };
}
