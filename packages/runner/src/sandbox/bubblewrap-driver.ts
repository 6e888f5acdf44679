import { detectCgroupBackend, type CgroupBackend } from './cgroups/index.js';
import type { OneShotSpec, PersistentSpec, RunResult, SandboxDriver, SandboxHandle } from './driver.js';
import { runOneShot } from './one-shot.js';
import { EgressProxy } from '../egress/egress-proxy.js';
import { reapStaleSandboxes } from './reaper.js';
import { defaultUidPool, type UidPool } from './uid-pool.js';

export interface BubblewrapDriverOptions {
  /** @default detected from /sys/fs/cgroup */
  cgroups?: CgroupBackend;
  /** @default the process-wide pool (KILN_UID_BASE / KILN_UID_COUNT) */
  uids?: UidPool;
  /** Reap leftovers of crashed runners once per process (reapStaleSandboxes). @default true */
  reapStale?: boolean;
  /** The egress proxy for allowlist policies. @default one made on first use from KILN_EGRESS_* */
  egress?: EgressProxy;
}

let reapedOnce = false;

/** What the persistent-sandbox module (`./persistent/index.js`) receives to build on. */
export interface PersistentDeps {
  cgroups: CgroupBackend;
  uids: UidPool;
  trackCleanup: (done: Promise<void>) => void;
  egress: () => EgressProxy;
}

/** The signature `./persistent/index.js` exports as `startPersistentSandbox`. */
export type StartPersistentSandbox = (spec: PersistentSpec, deps: PersistentDeps) => Promise<SandboxHandle>;

/**
 * The bubblewrap sandbox driver: one-shot runs here, persistent sandboxes delegated to
 * `./persistent/index.js` (its `startPersistentSandbox`), loaded on first use.
 */
export class BubblewrapDriver implements SandboxDriver {
  readonly name = 'bubblewrap';
  private readonly cgroups: CgroupBackend;
  private readonly uids: UidPool;
  private readonly pending = new Set<Promise<void>>();
  private readonly cleanupErrors: Error[] = [];
  private egressProxy: EgressProxy | undefined;

  constructor(options: BubblewrapDriverOptions = {}) {
    this.cgroups = options.cgroups ?? detectCgroupBackend();
    this.uids = options.uids ?? defaultUidPool();
    this.egressProxy = options.egress;
    // Once per process, in the background: remove what a crashed runner left (old and empty only).
    if (!reapedOnce && options.reapStale !== false) {
      reapedOnce = true;
      const reaping = reapStaleSandboxes({ cgroups: this.cgroups }).then(() => undefined);
      this.trackCleanup(reaping);
    }
  }

  private readonly trackCleanup = (done: Promise<void>): void => {
    const tracked = done.catch((err: unknown) => {
      this.cleanupErrors.push(err instanceof Error ? err : new Error(String(err)));
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  };

  /** Made on first use, so a runner whose policies never allow egress never reads its settings. */
  private readonly egress = (): EgressProxy => (this.egressProxy ??= new EgressProxy());

  run(spec: OneShotSpec): Promise<RunResult> {
    return runOneShot(spec, { cgroups: this.cgroups, uids: this.uids, trackCleanup: this.trackCleanup, egress: this.egress });
  }

  async start(spec: PersistentSpec): Promise<SandboxHandle> {
    // A specifier in a variable: the module is optional at compile time and loaded only when needed.
    const specifier = './persistent/index.js';
    let mod: { startPersistentSandbox?: StartPersistentSandbox };
    try {
      mod = (await import(specifier)) as { startPersistentSandbox?: StartPersistentSandbox };
    } catch (err) {
      throw new Error(`persistent sandboxes are not available in this build: ${(err as Error).message}`);
    }
    if (typeof mod.startPersistentSandbox !== 'function') {
      throw new Error('persistent sandboxes are not available: ./persistent/index.js has no startPersistentSandbox');
    }
    return mod.startPersistentSandbox(spec, { cgroups: this.cgroups, uids: this.uids, trackCleanup: this.trackCleanup, egress: this.egress });
  }

  /**
   * Resolves once every sandbox's background cleanup has finished (for shutdown and tests); rejects with
   * the first cleanup failure seen since the last call.
   */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    const err = this.cleanupErrors.shift();
    this.cleanupErrors.length = 0;
    if (err) throw err;
  }
}
