import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { KilnError, type JobSpec, type RunnerLanguage } from '@kiln/core';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { egressConfigFromEnv, EgressProxy } from '../egress/index.js';
import { buildOneShotSpec } from '../languages/spec.js';
import { advertisedLanguages, detectLanguages, pickToolchain, type DetectedLanguage } from '../languages/detect.js';
import { RunnerAgent, type AgentLogger } from './agent.js';
import { ControlPlaneClient } from './control-plane-client.js';
import { detectHostCapacity, formatBytes, MemoryLedger } from './host-capacity.js';
import { credentialFile, preparePrivateDir } from './credential-file.js';
import { ServiceHost } from '../services/service-host.js';
import { SessionHost } from '../sessions/session-host.js';
import { JobStdinHost } from '../job-stdin/job-stdin-host.js';
import { PooledDriver } from '../pool/pooled-driver.js';
import type { WarmPool } from '../pool/warm-pool.js';
import { DEFAULT_LIMITS } from '@kiln/core';

export interface RunnerConfig {
  /** The control plane's URL (any replica). */
  serverUrl: string;
  /** The fleet's join token (KILN_RUNNER_TOKEN): it only registers; the node's own credential is kept in the data dir. */
  token: string;
  /** @default "default" */
  zone?: string;
  /** Jobs run at once. @default 2 */
  capacity?: number;
  /** The node's stable identity across restarts. @default derived from the host name and data dir */
  name?: string;
  /** Holds the node's credential (0600) in a 0700 folder. @default "./.kiln/runner" */
  dataDir?: string;
  labels?: Record<string, string>;
  /**
   * Memory all sandboxes together may hold (KILN_RUNNER_MEMORY_BUDGET_BYTES); jobs asking for more are
   * refused, and running jobs' memory limits never sum past it.
   * @default 90% of the host RAM or of the runner's own cgroup memory limit, whichever is smaller
   */
  memoryBudgetBytes?: number;
  /** The memory a not-yet-leased job is assumed to need (KILN_RUNNER_SLOT_MEMORY_BYTES). @default 268435456 */
  slotMemoryBytes?: number;
  /**
   * Where the endpoint for the control plane's session traffic listens (KILN_RUNNER_SESSION_LISTEN),
   * `host:port`. @default "127.0.0.1:0" (a free port on loopback)
   */
  sessionListen?: string;
  /**
   * The URL the control plane reaches that endpoint at (KILN_RUNNER_SESSION_ADDRESS), registered as the
   * runner's address. @default the URL of the listening socket
   */
  sessionAddress?: string;
  /**
   * Pre-built sandboxes kept ready per shape (KILN_RUNNER_POOL_SIZE); 0 turns the warm pool off.
   * @default 2
   */
  poolPerShape?: number;
  /** A shape nobody asked for in this long loses its ready sandboxes (KILN_RUNNER_POOL_IDLE_MS). @default 60000 */
  poolIdleMs?: number;
  /** How long a job's output gathers before it is sent to live watchers. @default 50 */
  outputFlushIntervalMs?: number;
  logger: AgentLogger;
}

export interface RunningRunner {
  agent: RunnerAgent;
  languages: RunnerLanguage[];
  driver: BubblewrapDriver;
  /** The warm pool jobs and sessions take sandboxes from (absent when KILN_RUNNER_POOL_SIZE=0). */
  pool: WarmPool | undefined;
  sessions: SessionHost;
  stop(): Promise<void>;
}

/** A node's default name: the same host and data dir give the same name, so a restart is recognised. */
export function defaultRunnerName(dataDir: string): string {
  const digest = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 8);
  return `${hostname()}-${digest}`;
}

/**
 * Turns a leased job's frozen spec into the sandbox run, through the language catalog, on the toolchain
 * of the job's version among those this runner detected (its language's default when it names none).
 */
export function jobToRunSpec(spec: JobSpec, detected: readonly DetectedLanguage[]) {
  const toolchain = pickToolchain(detected, spec.language, spec.version);
  if (!toolchain) {
    throw new KilnError('UNSUPPORTED_LANGUAGE', `this runner does not offer ${spec.language}${spec.version === null ? '' : ` ${spec.version}`}`, {
      field: 'version',
    });
  }
  return buildOneShotSpec(
    {
      language: spec.language,
      ...(spec.code !== null ? { code: spec.code } : {}),
      ...(spec.code === null || spec.files.length > 0 ? { files: spec.files } : {}),
      ...(spec.entrypoint !== null ? { entrypoint: spec.entrypoint } : {}),
      args: spec.args,
      ...(spec.stdin !== null ? { stdin: spec.stdin } : {}),
      env: spec.env,
      ...(spec.compile_limits ? { compileLimits: spec.compile_limits } : {}),
      ...(spec.compiler_options ? { compilerOptions: spec.compiler_options } : {}),
    },
    spec.limits,
    { collect: spec.collect, network: spec.network },
    toolchain.definition,
  );
}

/** Starts a runner node: detects languages inside real sandboxes, registers, and takes work. */
export async function startRunner(config: RunnerConfig): Promise<RunningRunner> {
  const dataDir = config.dataDir ?? './.kiln/runner';
  preparePrivateDir(dataDir);
  // The egress proxy's settings (KILN_EGRESS_*) are read now, so a bad one stops the start with its name.
  const egress = new EgressProxy(egressConfigFromEnv(process.env), config.logger);
  const driver = new BubblewrapDriver({ egress });
  const detected = await detectLanguages(driver);
  const languages = advertisedLanguages(detected);
  config.logger.info({ languages: languages.map((l) => `${l.name} ${l.version}`) }, 'languages detected');
  const host = detectHostCapacity(config.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: config.memoryBudgetBytes } : {});
  config.logger.info(
    { memory_budget_bytes: host.memoryBudgetBytes, source: host.memoryBudgetSource, pid_max: host.pidMax },
    `sandbox memory budget ${formatBytes(host.memoryBudgetBytes)}`,
  );
  const client = new ControlPlaneClient(config.serverUrl, config.token, credentialFile(dataDir));
  const capacity = config.capacity ?? 2;
  // One ledger for the node: session sandboxes and jobs hold the same memory budget.
  const memory = new MemoryLedger(host.memoryBudgetBytes);
  // The warm pool grows only into what the node can spare now: slots no job holds, memory no job or session was promised.
  let agent: RunnerAgent | undefined;
  const pooled =
    (config.poolPerShape ?? 2) > 0
      ? new PooledDriver(driver, {
          perShape: config.poolPerShape ?? 2,
          ...(config.poolIdleMs !== undefined ? { idleMs: config.poolIdleMs } : {}),
          room: () => ({
            slots: capacity - (agent?.runningJobs ?? 0),
            memoryBytes: memory.availableBytes,
          }),
          onBuildError: (err) => config.logger.warn({ err: err.message }, 'warm pool: a sandbox could not be built'),
        })
      : undefined;
  const jobStdin = new JobStdinHost();
  const sessions = new SessionHost({
    driver: pooled ?? driver,
    services: new ServiceHost(driver),
    host,
    memory,
    jobStdin,
    signingKey: () => client.signingKey(),
    ...(config.sessionListen ? { listen: config.sessionListen } : {}),
  });
  const listening = await sessions.start();
  config.logger.info({ listening }, 'session endpoint listening');
  agent = new RunnerAgent({
    client,
    address: config.sessionAddress ?? listening,
    driver: pooled ?? driver,
    ...(pooled ? { poolStats: () => pooled.pool.stats() } : {}),
    jobStdin,
    languages,
    toRunSpec: (spec) => jobToRunSpec(spec, detected),
    name: config.name ?? defaultRunnerName(dataDir),
    zone: config.zone ?? 'default',
    capacity,
    labels: config.labels ?? {},
    logger: config.logger,
    host,
    memory,
    ...(config.slotMemoryBytes !== undefined ? { slotMemoryBytes: config.slotMemoryBytes } : {}),
    ...(config.outputFlushIntervalMs !== undefined ? { outputFlushIntervalMs: config.outputFlushIntervalMs } : {}),
  });
  await agent.start();
  // The default policy's shape is the likeliest first request: build it before any job arrives.
  pooled?.pool.want({ limits: DEFAULT_LIMITS, loopback: false });
  const running = agent;
  return {
    agent: running,
    languages,
    driver,
    pool: pooled?.pool,
    sessions,
    stop: async () => {
      await running.stop();
      client.close();
      await sessions.stop();
      await egress.closeAll();
      await (pooled ?? driver).drain().catch(() => {});
    },
  };
}
