import type { PersistentSandbox } from '../sandbox/persistent/persistent-sandbox.js';
import { shapeKey, shapeLabel, type SandboxShape } from './shape.js';

/** What the node can give the pool now: job slots not in use, and memory budget not promised to running jobs. */
export interface PoolRoom {
  slots: number;
  memoryBytes: number;
}

export interface WarmPoolOptions {
  /** Builds one empty sandbox of the shape (namespaces, cgroup, uid, tmpfs, seccomp; init waiting). */
  build: (shape: SandboxShape) => Promise<PersistentSandbox>;
  /** The node's free capacity, read each time the pool grows: pooled sandboxes never exceed it. */
  room: () => PoolRoom;
  /** Ready sandboxes kept per shape at most. @default 2 */
  perShape?: number;
  /** Shapes kept warm at once (the least recently wanted is dropped first). @default 4 */
  maxShapes?: number;
  /** A shape nobody asked for in this long loses its ready sandboxes. @default 60 000 */
  idleMs?: number;
  /** A build that failed (the node is short of uids, a cgroup error); the pool backs off. */
  onBuildError?: (err: Error, shape: SandboxShape) => void;
}

/** One shape's counts, for /metrics. `taken` and `missed` only grow. */
export interface PoolShapeStats {
  shape: string;
  ready: number;
  building: number;
  taken: number;
  missed: number;
  build_failures: number;
}

export interface PoolStats {
  ready: number;
  building: number;
  /** Memory limits the ready and building sandboxes carry (what they would be promised when taken). */
  held_memory_bytes: number;
  shapes: PoolShapeStats[];
}

interface ShapeEntry {
  shape: SandboxShape;
  label: string;
  ready: PersistentSandbox[];
  building: number;
  lastWantedAt: number;
  taken: number;
  missed: number;
  failures: number;
  /** After a failed build, no new build before this time (exponential back-off). */
  retryAt: number;
}

const MAX_BACKOFF_MS = 30_000;

/**
 * The warm pool: per shape, a few sandboxes built before the work arrives and waiting with nothing
 * started in them. A request takes one (it is then the request's alone: used once and destroyed by its
 * user, as a fresh sandbox would be); the pool refills in the background, never past the node's free
 * capacity, and lets shapes nobody asks for go. Sessions and one-shot jobs take from the same pool.
 */
export class WarmPool {
  private readonly shapes = new Map<string, ShapeEntry>();
  private readonly destroying = new Set<Promise<void>>();
  private readonly builds = new Set<Promise<void>>();
  private refillQueued = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly idleTimer: NodeJS.Timeout;
  private closed = false;
  private readonly perShape: number;
  private readonly maxShapes: number;
  private readonly idleMs: number;

  constructor(private readonly options: WarmPoolOptions) {
    this.perShape = options.perShape ?? 2;
    this.maxShapes = options.maxShapes ?? 4;
    this.idleMs = options.idleMs ?? 60_000;
    this.idleTimer = setInterval(() => this.shrinkIdle(), Math.max(100, Math.min(this.idleMs / 2, 10_000)));
    this.idleTimer.unref();
  }

  /** A ready sandbox of the shape, or undefined (the caller builds one itself); the pool refills either way. */
  take(shape: SandboxShape): PersistentSandbox | undefined {
    if (this.closed) return undefined;
    const entry = this.entryFor(shape);
    entry.lastWantedAt = Date.now();
    let sandbox: PersistentSandbox | undefined;
    while ((sandbox = entry.ready.shift()) !== undefined && !sandbox.alive) this.destroy(sandbox);
    if (sandbox) entry.taken++;
    else entry.missed++;
    this.scheduleRefill();
    return sandbox;
  }

  /** Says the shape will be wanted (at start-up: the default policy's), so the pool builds it ahead. */
  want(shape: SandboxShape): void {
    if (this.closed) return;
    this.entryFor(shape).lastWantedAt = Date.now();
    this.scheduleRefill();
  }

  stats(): PoolStats {
    const shapes = [...this.shapes.values()].map((e) => ({
      shape: e.label,
      ready: e.ready.length,
      building: e.building,
      taken: e.taken,
      missed: e.missed,
      build_failures: e.failures,
    }));
    const held = this.held();
    return { ready: held.ready, building: held.building, held_memory_bytes: held.memoryBytes, shapes };
  }

  /** Resolves once no build or destruction is under way (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.builds.size > 0 || this.destroying.size > 0 || this.refillQueued) {
      await Promise.all([...this.builds, ...this.destroying, new Promise((r) => setImmediate(r))]);
    }
  }

  /** Destroys every ready sandbox, lets running builds finish into destruction, and stops growing. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.idleTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const entry of this.shapes.values()) for (const s of entry.ready.splice(0)) this.destroy(s);
    await this.settled();
  }

  /** Gives back ready sandboxes past what the node can spare now (a job took the slot or the memory). */
  trim(): void {
    const room = this.options.room();
    let held = this.held();
    // The least recently wanted shapes give theirs back first.
    const byAge = [...this.shapes.values()].sort((a, b) => a.lastWantedAt - b.lastWantedAt);
    for (const entry of byAge) {
      while (entry.ready.length > 0 && (held.count > Math.max(0, room.slots) || held.memoryBytes > Math.max(0, room.memoryBytes))) {
        this.destroy(entry.ready.shift()!);
        held = this.held();
      }
    }
  }

  private entryFor(shape: SandboxShape): ShapeEntry {
    const key = shapeKey(shape);
    let entry = this.shapes.get(key);
    if (!entry) {
      entry = {
        shape: { limits: { ...shape.limits }, loopback: shape.loopback },
        label: shapeLabel(shape),
        ready: [],
        building: 0,
        lastWantedAt: 0,
        taken: 0,
        missed: 0,
        failures: 0,
        retryAt: 0,
      };
      this.shapes.set(key, entry);
      // Bounded: past maxShapes the least recently wanted shape goes (its builds finish into destruction).
      while (this.shapes.size > this.maxShapes) {
        const [oldestKey, oldest] = [...this.shapes.entries()].sort((a, b) => a[1].lastWantedAt - b[1].lastWantedAt)[0]!;
        for (const s of oldest.ready.splice(0)) this.destroy(s);
        this.shapes.delete(oldestKey);
      }
    }
    return entry;
  }

  private held(): { count: number; ready: number; building: number; memoryBytes: number } {
    let ready = 0;
    let building = 0;
    let memoryBytes = 0;
    for (const e of this.shapes.values()) {
      ready += e.ready.length;
      building += e.building;
      memoryBytes += (e.ready.length + e.building) * e.shape.limits.memory_bytes;
    }
    return { count: ready + building, ready, building, memoryBytes };
  }

  private scheduleRefill(): void {
    if (this.refillQueued || this.closed) return;
    this.refillQueued = true;
    // Off the critical path: the request that took a sandbox goes on first.
    setImmediate(() => {
      this.refillQueued = false;
      this.refill();
    });
  }

  private refill(): void {
    if (this.closed) return;
    this.trim();
    const now = Date.now();
    const wanted = [...this.shapes.values()]
      .filter((e) => now - e.lastWantedAt <= this.idleMs)
      .sort((a, b) => b.lastWantedAt - a.lastWantedAt);
    for (const entry of wanted) {
      if (now < entry.retryAt) {
        this.retryLater(entry.retryAt - now);
        continue;
      }
      while (entry.ready.length + entry.building < this.perShape) {
        const room = this.options.room();
        const held = this.held();
        if (held.count + 1 > room.slots || held.memoryBytes + entry.shape.limits.memory_bytes > room.memoryBytes) return;
        this.build(entry);
      }
    }
  }

  private build(entry: ShapeEntry): void {
    entry.building++;
    const done = this.options.build(entry.shape).then(
      (sandbox) => {
        entry.building--;
        entry.failures = 0;
        const current = this.shapes.get(shapeKey(entry.shape)) === entry;
        if (this.closed || !current || Date.now() - entry.lastWantedAt > this.idleMs) this.destroy(sandbox);
        else {
          entry.ready.push(sandbox);
          this.trim();
        }
      },
      (err: unknown) => {
        entry.building--;
        entry.failures++;
        const backoffMs = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(entry.failures, 10));
        entry.retryAt = Date.now() + backoffMs;
        this.options.onBuildError?.(err instanceof Error ? err : new Error(String(err)), entry.shape);
        this.retryLater(backoffMs);
      },
    );
    this.builds.add(done);
    void done.finally(() => this.builds.delete(done));
  }

  private retryLater(ms: number): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.scheduleRefill();
    }, ms);
    this.retryTimer.unref();
  }

  /** Shapes nobody asked for within idleMs lose their ready sandboxes, and are forgotten once empty. */
  private shrinkIdle(): void {
    const now = Date.now();
    for (const [key, entry] of this.shapes) {
      if (now - entry.lastWantedAt <= this.idleMs) continue;
      for (const s of entry.ready.splice(0)) this.destroy(s);
      if (entry.building === 0) this.shapes.delete(key);
    }
  }

  private destroy(sandbox: PersistentSandbox): void {
    const done = sandbox.destroy().catch(() => {
      // the driver's cleanup tracking reports a failed removal (its drain rejects)
    });
    this.destroying.add(done);
    void done.finally(() => this.destroying.delete(done));
  }
}
