import { closeSync, type Dirent } from 'node:fs';
import { opendir } from 'node:fs/promises';
import { ARTIFACT_NAME_MAX_LENGTH, GlobSet, type GlobMeter, type GlobState } from '@kiln/core';
import type { CollectedFile } from './driver.js';
import { UnsafePathError, type SafeRoot } from './safe-fs.js';

/**
 * Bounds of one collection walk. Everything it works on (names, their number, depth, sizes) is made by
 * the sandbox, so each has a ceiling, and the walk gives the event loop back between batches: heartbeats
 * and other jobs go on while a workspace full of files is examined.
 */
export interface CollectBounds {
  /** Largest single file collected; bigger files are skipped. @default 16 MiB */
  maxFileBytes: number;
  /** Bytes gathered at most; files past it are skipped. @default 64 MiB */
  maxTotalBytes: number;
  /** Files collected at most. @default 1000 */
  maxFiles: number;
  /** Folder entries examined at most (files, folders, anything); past it the walk stops. @default 10000 */
  maxEntries: number;
  /** Folders deeper than this are not entered. @default 32 */
  maxDepth: number;
  /** Files with a longer path are not collected (a report cannot name them). @default 1024 */
  maxPathLength: number;
  /** Glob automaton steps at most (GlobMeter); past it the walk stops. @default 20000000 */
  maxMatchSteps: number;
  /** The walk stops after this long. @default 10000 */
  maxTimeMs: number;
  /** Entries examined between two yields to the event loop. @default 256 */
  batchEntries: number;
}

export const DEFAULT_COLLECT_BOUNDS: CollectBounds = {
  maxFileBytes: 16 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxFiles: 1000,
  maxEntries: 10_000,
  maxDepth: 32,
  maxPathLength: ARTIFACT_NAME_MAX_LENGTH,
  maxMatchSteps: 20_000_000,
  maxTimeMs: 10_000,
  batchEntries: 256,
};

export interface CollectOutcome {
  files: CollectedFile[];
  /** Set when a bound stopped the walk before it saw everything: why, in words a tenant can act on. */
  stopped?: string;
  /** What the walk did, for logs and tests. */
  entriesExamined: number;
  matchSteps: number;
}

class WalkStopped extends Error {}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Collects the regular files under `root` that match any of `globs`, never following links (SafeRoot),
 * in path order. Folders no glob can match below are not walked at all (`out/**` never enters
 * `node_modules`); matching costs one pass of the glob automaton over each name (core/glob.ts), linear.
 */
export async function collectFiles(
  root: SafeRoot,
  globs: readonly string[],
  bounds: Partial<CollectBounds> = {},
  now: () => number = Date.now,
): Promise<CollectOutcome> {
  const b = { ...DEFAULT_COLLECT_BOUNDS, ...bounds };
  const meter: GlobMeter = { steps: 0 };
  const outcome: CollectOutcome = { files: [], entriesExamined: 0, matchSteps: 0 };
  if (globs.length === 0) return outcome;
  const matcher = new GlobSet(globs);
  const deadline = now() + b.maxTimeMs;
  let budgetBytes = b.maxTotalBytes;
  let sinceYield = 0;

  /** Counts one entry against every bound; throws WalkStopped with the reason when one is passed. */
  const examine = async () => {
    if (++outcome.entriesExamined > b.maxEntries) {
      throw new WalkStopped(`more than ${b.maxEntries} entries to examine under /workspace`);
    }
    if (meter.steps > b.maxMatchSteps) throw new WalkStopped(`matching the globs took more than ${b.maxMatchSteps} steps`);
    if (++sinceYield >= b.batchEntries) {
      sinceYield = 0;
      await yieldToEventLoop();
    }
    if (now() > deadline) throw new WalkStopped(`examining the workspace took more than ${b.maxTimeMs} ms`);
  };

  const walk = async (dirFd: number, prefix: string, state: GlobState, depth: number): Promise<void> => {
    const entries = await listBounded(dirFd, b.maxEntries - outcome.entriesExamined + 1);
    entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    for (const entry of entries) {
      await examine();
      const path = prefix + entry.name;
      if (path.length > b.maxPathLength) continue;
      if (entry.isFile()) {
        if (outcome.files.length >= b.maxFiles) continue;
        if (!matcher.accepts(matcher.advance(state, entry.name, meter))) continue;
        const content = await readIfSafe(() => root.readFileAt(dirFd, entry.name, path, Math.min(b.maxFileBytes, budgetBytes)));
        if (content) {
          budgetBytes -= content.length;
          outcome.files.push({ path, size_bytes: content.length, content });
        }
      } else if (entry.isDirectory() && depth < b.maxDepth) {
        const inside = matcher.advance(state, `${entry.name}/`, meter);
        if (!matcher.alive(inside)) continue;
        let childFd: number;
        try {
          childFd = root.openChildDir(dirFd, entry.name, path);
        } catch (err) {
          if (err instanceof UnsafePathError || isGone(err)) continue;
          throw err;
        }
        try {
          await walk(childFd, `${path}/`, inside, depth + 1);
        } finally {
          closeSync(childFd);
        }
      }
      // Links, FIFOs, sockets and devices are never collected nor followed.
    }
  };

  const rootFd = root.openRoot();
  try {
    await walk(rootFd, '', matcher.start(), 0);
  } catch (err) {
    if (!(err instanceof WalkStopped)) throw err;
    outcome.stopped = `collection stopped: ${err.message}; collect narrower globs (e.g. "out/**") or write fewer files`;
  } finally {
    closeSync(rootFd);
    outcome.matchSteps = meter.steps;
  }
  return outcome;
}

/**
 * Reads a folder's entries, at most `limit` of them, without blocking: opendir reads the folder in
 * small chunks on the thread pool instead of one readdirSync of a folder with 100,000 names.
 */
async function listBounded(dirFd: number, limit: number): Promise<Dirent[]> {
  const dir = await opendir(`/proc/self/fd/${dirFd}`, { bufferSize: 128 });
  const entries: Dirent[] = [];
  try {
    for (let entry = await dir.read(); entry !== null && entries.length < limit; entry = await dir.read()) {
      entries.push(entry);
    }
  } finally {
    await dir.close();
  }
  return entries;
}

const isGone = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

async function readIfSafe(read: () => Promise<Buffer>): Promise<Buffer | undefined> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof UnsafePathError || isGone(err)) return undefined;
    throw err;
  }
}
