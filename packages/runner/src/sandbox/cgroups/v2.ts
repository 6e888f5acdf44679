import { existsSync, readdirSync, statSync } from 'node:fs';
import type { CgroupBackend, CgroupBind, CgroupLimits, CgroupUsage, ExistingCgroup, SandboxCgroup } from './types.js';
import { ensureDir, readKeyed, readNumber, readPids, removeDirsWithRetry, writeValue, killUntilEmpty } from './fs-util.js';

const CPU_PERIOD_US = 100_000;

/**
 * cgroup v2: one unified hierarchy at `root`. The `kiln` parent delegates memory, pids and cpu to its
 * children. `root` is a parameter so tests can drive the backend against a fake tree in a temp folder.
 */
export class CgroupV2Backend implements CgroupBackend {
  readonly version = 2 as const;
  private readonly parent: string;

  constructor(readonly root = '/sys/fs/cgroup', readonly parentName = 'kiln') {
    this.parent = `${root}/${parentName}`;
    ensureDir(this.parent);
    for (const dir of [root, this.parent]) {
      try {
        writeValue(`${dir}/cgroup.subtree_control`, '+memory +pids +cpu');
      } catch {
        // A controller may be missing or already enabled; the limit writes below will tell.
      }
    }
  }

  list(): ExistingCgroup[] {
    const now = Date.now();
    return readdirSync(this.parent, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => {
        const dir = `${this.parent}/${e.name}`;
        return { name: e.name, ageMs: now - statSync(dir).mtimeMs, empty: readPids(`${dir}/cgroup.procs`).length === 0 };
      });
  }

  attach(name: string): SandboxCgroup {
    return new CgroupV2(name, `${this.parent}/${name}`);
  }

  create(name: string, limits: CgroupLimits): SandboxCgroup {
    const dir = `${this.parent}/${name}`;
    ensureDir(dir);
    try {
      writeValue(`${dir}/memory.max`, limits.memoryBytes);
      writeValue(`${dir}/memory.swap.max`, 0);
      writeValue(`${dir}/pids.max`, limits.pids);
      writeValue(`${dir}/cpu.max`, `${Math.round((CPU_PERIOD_US * (limits.cpuPercent ?? 100)) / 100)} ${CPU_PERIOD_US}`);
    } catch (err) {
      void removeDirsWithRetry([dir], () => {}, 1000).catch(() => {});
      throw err;
    }
    return new CgroupV2(name, dir);
  }
}

class CgroupV2 implements SandboxCgroup {
  readonly procsFiles: string[];
  readonly binds: CgroupBind[];
  private cpuBaselineUs = 0;
  private oomBaseline = 0;
  private pidsBaseline = 0;
  private peakResetSupported = true;

  constructor(
    readonly name: string,
    private readonly dir: string,
  ) {
    this.procsFiles = [`${dir}/cgroup.procs`];
    this.binds = [{ source: dir, dest: '/sys/fs/cgroup' }];
  }

  usage(): CgroupUsage {
    const peakFile = `${this.dir}/memory.peak`;
    return {
      cpuTimeMs: ((readKeyed(`${this.dir}/cpu.stat`).get('usage_usec') ?? 0) - this.cpuBaselineUs) / 1000,
      // memory.peak exists from Linux 5.19; before that the current usage is the best evidence left.
      memoryPeakBytes: readNumber(existsSync(peakFile) ? peakFile : `${this.dir}/memory.current`),
      oomKills: (readKeyed(`${this.dir}/memory.events`).get('oom_kill') ?? 0) - this.oomBaseline,
      pidsLimitHits: (readKeyed(`${this.dir}/pids.events`).get('max') ?? 0) - this.pidsBaseline,
      ...(existsSync(`${this.dir}/pids.peak`) ? { pidsPeak: readNumber(`${this.dir}/pids.peak`) } : {}),
    };
  }

  resetCounters(): void {
    this.cpuBaselineUs = readKeyed(`${this.dir}/cpu.stat`).get('usage_usec') ?? 0;
    this.oomBaseline = readKeyed(`${this.dir}/memory.events`).get('oom_kill') ?? 0;
    this.pidsBaseline = readKeyed(`${this.dir}/pids.events`).get('max') ?? 0;
    if (this.peakResetSupported) {
      try {
        // Linux 6.12+ resets memory.peak on write ("reset" semantics per open file on some kernels).
        writeValue(`${this.dir}/memory.peak`, 'reset');
      } catch {
        this.peakResetSupported = false;
      }
    }
  }

  pids(): number[] {
    return readPids(`${this.dir}/cgroup.procs`);
  }

  killAll(): void {
    // Kernels before 5.14 have no cgroup.kill; the loop below still kills every member.
    if (existsSync(`${this.dir}/cgroup.kill`)) {
      try {
        writeValue(`${this.dir}/cgroup.kill`, 1);
      } catch {
        // the folder is being removed
      }
    }
    killUntilEmpty(() => this.pids());
  }

  remove(): Promise<void> {
    return removeDirsWithRetry([this.dir], () => this.killAll());
  }
}
