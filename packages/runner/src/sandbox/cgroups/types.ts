/**
 * One interface over cgroup v1 (this project's machines) and cgroup v2 (most current distributions).
 * A fresh cgroup is created per sandbox under a `kiln` parent, because a used one keeps draining pids
 * for a second or two after its processes exit.
 */

/** Limits applied to one sandbox's cgroup. */
export interface CgroupLimits {
  /** Memory limit; swap is included (v1 memsw = memory, v2 swap.max = 0). */
  memoryBytes: number;
  /** Maximum number of tasks (processes and threads). */
  pids: number;
  /** CPU bandwidth in percent of one core; 100 = one core. @default 100 */
  cpuPercent?: number;
}

/** What a sandbox's cgroup accounted since it was created or since the last `resetCounters()`. */
export interface CgroupUsage {
  cpuTimeMs: number;
  memoryPeakBytes: number;
  /** Processes the kernel's OOM killer killed inside this cgroup. */
  oomKills: number;
  /** Times a fork or clone failed because pids.max was reached. */
  pidsLimitHits: number;
  /** Most tasks alive at once, where the kernel reports it (pids.peak, Linux 6.x). */
  pidsPeak?: number;
}

/** A host folder to bind read-only inside the sandbox so runtimes (Node, Java) can read their limits. */
export interface CgroupBind {
  source: string;
  /** Absolute path inside the sandbox, under /sys/fs/cgroup. */
  dest: string;
}

export interface SandboxCgroup {
  /** Unique name under the `kiln` parent. */
  readonly name: string;
  /** Files a process writes its own pid to in order to join every controller (kiln-launch --cgroup). */
  readonly procsFiles: readonly string[];
  readonly binds: readonly CgroupBind[];
  usage(): CgroupUsage;
  /** Starts a new accounting period (per-command accounting in persistent sandboxes). */
  resetCounters(): void;
  /** Pids currently in the cgroup (host pid namespace). */
  pids(): number[];
  /** Kills every process in the cgroup with SIGKILL; synchronous, best effort, repeatable. */
  killAll(): void;
  /**
   * Kills everything, then removes the cgroup folders, retrying while the kernel drains them.
   * Resolves when every folder is gone; rejects only after giving up (about 15 s).
   */
  remove(): Promise<void>;
}

/** A sandbox cgroup found under the `kiln` parent. */
export interface ExistingCgroup {
  name: string;
  /** Time since the folder was created (its mtime). */
  ageMs: number;
  /** True when no process is in it. */
  empty: boolean;
}

export interface CgroupBackend {
  readonly version: 1 | 2;
  /** Creates a fresh cgroup with limits applied. `name` must be unique among live sandboxes. */
  create(name: string, limits: CgroupLimits): SandboxCgroup;
  /** The sandbox cgroups that exist now (for reaping what a crashed runner left). */
  list(): ExistingCgroup[];
  /** A handle on an existing cgroup, e.g. to remove one a crashed runner left behind. */
  attach(name: string): SandboxCgroup;
}
