import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import type { CgroupBackend, CgroupBind, CgroupLimits, CgroupUsage, ExistingCgroup, SandboxCgroup } from './types.js';
import { ensureDir, readKeyed, readNumber, readPids, readText, removeDirsWithRetry, writeValue, killUntilEmpty } from './fs-util.js';

const CPU_PERIOD_US = 100_000;

/**
 * cgroup v1: one hierarchy per controller under `root` (memory, pids, cpu, cpuacct). When a cgroup2
 * hierarchy is also mounted (`root/unified`, the "hybrid" layout), the sandbox joins it too, only for
 * its `cgroup.kill`, which kills a whole tree atomically.
 */
export class CgroupV1Backend implements CgroupBackend {
  readonly version = 1 as const;
  private readonly parents: {
    memory: string;
    pids: string;
    cpu: string;
    cpuacct: string;
    cpuset?: string;
    unified?: string;
  };
  private readonly cpuacctSharesCpu: boolean;

  constructor(readonly root = '/sys/fs/cgroup', readonly parentName = 'kiln') {
    const at = (c: string) => `${root}/${c}/${parentName}`;
    const unifiedRoot = `${root}/unified`;
    this.parents = {
      memory: at('memory'),
      pids: at('pids'),
      cpu: at('cpu'),
      cpuacct: at('cpuacct'),
      // Java refuses to read any cgroup limit unless it also finds a cpuset hierarchy, so sandboxes join one.
      ...(existsSync(`${root}/cpuset/cpuset.cpus`) ? { cpuset: at('cpuset') } : {}),
      ...(existsSync(`${unifiedRoot}/cgroup.procs`) ? { unified: `${unifiedRoot}/${parentName}` } : {}),
    };
    // Some distributions co-mount cpu and cpuacct ("cpu,cpuacct" with two symlinks to it).
    this.cpuacctSharesCpu = realpathSync(`${root}/cpu`) === realpathSync(`${root}/cpuacct`);
    for (const dir of Object.values(this.parents)) if (dir) ensureDir(dir);
    if (this.parents.cpuset) {
      // A new v1 cpuset starts with no CPUs and no memory nodes: give the parent the root's, and let
      // children copy them (clone_children), so creating a sandbox's cpuset costs one mkdir.
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        if (readText(`${this.parents.cpuset}/${file}`).trim() === '') {
          writeValue(`${this.parents.cpuset}/${file}`, readText(`${root}/cpuset/${file}`).trim());
        }
      }
      writeValue(`${this.parents.cpuset}/cgroup.clone_children`, 1);
    }
  }

  private dirsFor(name: string) {
    return {
      memory: `${this.parents.memory}/${name}`,
      pids: `${this.parents.pids}/${name}`,
      cpu: `${this.parents.cpu}/${name}`,
      cpuacct: this.cpuacctSharesCpu ? `${this.parents.cpu}/${name}` : `${this.parents.cpuacct}/${name}`,
      cpuset: this.parents.cpuset ? `${this.parents.cpuset}/${name}` : undefined,
      unified: this.parents.unified ? `${this.parents.unified}/${name}` : undefined,
    };
  }

  list(): ExistingCgroup[] {
    // Any controller may hold a leftover (creation or removal can stop half-way): take the union.
    const names = new Set<string>();
    for (const parent of Object.values(this.parents)) {
      if (!parent) continue;
      for (const entry of readdirSync(parent, { withFileTypes: true })) if (entry.isDirectory()) names.add(entry.name);
    }
    const now = Date.now();
    return [...names].map((name) => {
      const dirs = Object.values(this.dirsFor(name)).filter((d): d is string => !!d && existsSync(d));
      const mtimes = dirs.map((d) => statSync(d).mtimeMs);
      return {
        name,
        ageMs: now - Math.min(...mtimes, now),
        empty: dirs.every((d) => readPids(`${d}/cgroup.procs`).length === 0),
      };
    });
  }

  attach(name: string): SandboxCgroup {
    const dirs = this.dirsFor(name);
    const existing = [...new Set(Object.values(dirs))].filter((d): d is string => !!d && existsSync(d));
    return new CgroupV1(name, dirs, existing);
  }

  create(name: string, limits: CgroupLimits): SandboxCgroup {
    const dirs = this.dirsFor(name);
    const created: string[] = [];
    try {
      for (const dir of new Set([dirs.memory, dirs.pids, dirs.cpu, dirs.cpuacct, dirs.cpuset, dirs.unified])) {
        if (!dir) continue;
        ensureDir(dir);
        created.push(dir);
      }
      // memsw must stay >= memory: lower memsw last when shrinking, raise it first when growing. A fresh
      // cgroup starts unlimited, so setting memory first then memsw is always valid.
      writeValue(`${dirs.memory}/memory.limit_in_bytes`, limits.memoryBytes);
      if (existsSync(`${dirs.memory}/memory.memsw.limit_in_bytes`)) {
        writeValue(`${dirs.memory}/memory.memsw.limit_in_bytes`, limits.memoryBytes);
      }
      writeValue(`${dirs.pids}/pids.max`, limits.pids);
      writeValue(`${dirs.cpu}/cpu.cfs_period_us`, CPU_PERIOD_US);
      writeValue(`${dirs.cpu}/cpu.cfs_quota_us`, Math.round((CPU_PERIOD_US * (limits.cpuPercent ?? 100)) / 100));
    } catch (err) {
      void removeDirsWithRetry(created, () => {}, 1000).catch(() => {});
      throw err;
    }
    return new CgroupV1(name, dirs, created);
  }
}

class CgroupV1 implements SandboxCgroup {
  readonly procsFiles: string[];
  readonly binds: CgroupBind[];
  private oomBaseline = 0;
  private pidsBaseline = 0;

  constructor(
    readonly name: string,
    private readonly dirs: {
      memory: string;
      pids: string;
      cpu: string;
      cpuacct: string;
      cpuset?: string | undefined;
      unified?: string | undefined;
    },
    private readonly allDirs: string[],
  ) {
    this.procsFiles = allDirs.map((d) => `${d}/cgroup.procs`);
    this.binds = [
      { source: dirs.memory, dest: '/sys/fs/cgroup/memory' },
      { source: dirs.pids, dest: '/sys/fs/cgroup/pids' },
      { source: dirs.cpu, dest: '/sys/fs/cgroup/cpu' },
      ...(dirs.cpuacct !== dirs.cpu ? [{ source: dirs.cpuacct, dest: '/sys/fs/cgroup/cpuacct' }] : []),
      ...(dirs.cpuset ? [{ source: dirs.cpuset, dest: '/sys/fs/cgroup/cpuset' }] : []),
    ];
  }

  usage(): CgroupUsage {
    return {
      cpuTimeMs: readNumber(`${this.dirs.cpuacct}/cpuacct.usage`) / 1e6,
      memoryPeakBytes: readNumber(`${this.dirs.memory}/memory.max_usage_in_bytes`),
      oomKills: (readKeyed(`${this.dirs.memory}/memory.oom_control`).get('oom_kill') ?? 0) - this.oomBaseline,
      pidsLimitHits: (readKeyed(`${this.dirs.pids}/pids.events`).get('max') ?? 0) - this.pidsBaseline,
      ...(this.hasPidsPeak ? { pidsPeak: readNumber(`${this.dirs.pids}/pids.peak`) } : {}),
    };
  }

  private hasPidsPeakCache: boolean | undefined;
  private get hasPidsPeak(): boolean {
    this.hasPidsPeakCache ??= existsSync(`${this.dirs.pids}/pids.peak`);
    return this.hasPidsPeakCache;
  }

  resetCounters(): void {
    writeValue(`${this.dirs.cpuacct}/cpuacct.usage`, 0);
    writeValue(`${this.dirs.memory}/memory.max_usage_in_bytes`, 0);
    // These two counters cannot be reset: remember where they stood.
    this.oomBaseline = readKeyed(`${this.dirs.memory}/memory.oom_control`).get('oom_kill') ?? 0;
    this.pidsBaseline = readKeyed(`${this.dirs.pids}/pids.events`).get('max') ?? 0;
  }

  pids(): number[] {
    return readPids(`${this.dirs.pids}/cgroup.procs`);
  }

  killAll(): void {
    if (this.dirs.unified) {
      try {
        writeValue(`${this.dirs.unified}/cgroup.kill`, 1);
      } catch {
        // folder already gone or kernel without cgroup.kill: fall through to the v1 loop
      }
    }
    killUntilEmpty(() => this.pids());
  }

  remove(): Promise<void> {
    return removeDirsWithRetry([...this.allDirs].reverse(), () => this.killAll());
  }
}
