import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { JobSpec, RunnerLanguage } from '@kiln/core';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { buildOneShotSpec } from '../languages/spec.js';
import { detectLanguages } from '../languages/detect.js';
import { RunnerAgent, type AgentLogger } from './agent.js';
import { ControlPlaneClient } from './control-plane-client.js';
import { detectHostCapacity, formatBytes, MemoryLedger } from './host-capacity.js';
import { credentialFile, preparePrivateDir } from './credential-file.js';
import { SessionHost } from '../sessions/session-host.js';

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
  logger: AgentLogger;
}

export interface RunningRunner {
  agent: RunnerAgent;
  languages: RunnerLanguage[];
  driver: BubblewrapDriver;
  sessions: SessionHost;
  stop(): Promise<void>;
}

/** A node's default name: the same host and data dir give the same name, so a restart is recognised. */
export function defaultRunnerName(dataDir: string): string {
  const digest = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 8);
  return `${hostname()}-${digest}`;
}

/** Turns a leased job's frozen spec into the sandbox run, through the language catalog. */
export function jobToRunSpec(spec: JobSpec) {
  return buildOneShotSpec(
    {
      language: spec.language,
      ...(spec.code !== null ? { code: spec.code } : {}),
      ...(spec.code === null || spec.files.length > 0 ? { files: spec.files } : {}),
      ...(spec.entrypoint !== null ? { entrypoint: spec.entrypoint } : {}),
      args: spec.args,
      ...(spec.stdin !== null ? { stdin: spec.stdin } : {}),
      env: spec.env,
    },
    spec.limits,
    { collect: spec.collect, network: spec.network },
  );
}

/** Starts a runner node: detects languages inside real sandboxes, registers, and takes work. */
export async function startRunner(config: RunnerConfig): Promise<RunningRunner> {
  const dataDir = config.dataDir ?? './.kiln/runner';
  preparePrivateDir(dataDir);
  const driver = new BubblewrapDriver();
  const languages = await detectLanguages(driver);
  config.logger.info({ languages: languages.map((l) => `${l.name} ${l.version}`) }, 'languages detected');
  const host = detectHostCapacity(config.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: config.memoryBudgetBytes } : {});
  config.logger.info(
    { memory_budget_bytes: host.memoryBudgetBytes, source: host.memoryBudgetSource, pid_max: host.pidMax },
    `sandbox memory budget ${formatBytes(host.memoryBudgetBytes)}`,
  );
  const client = new ControlPlaneClient(config.serverUrl, config.token, credentialFile(dataDir));
  // One ledger for the node: session sandboxes and jobs hold the same memory budget.
  const memory = new MemoryLedger(host.memoryBudgetBytes);
  const sessions = new SessionHost({
    driver,
    host,
    memory,
    signingKey: () => client.signingKey(),
    ...(config.sessionListen ? { listen: config.sessionListen } : {}),
  });
  const listening = await sessions.start();
  config.logger.info({ listening }, 'session endpoint listening');
  const agent = new RunnerAgent({
    client,
    address: config.sessionAddress ?? listening,
    driver,
    languages,
    toRunSpec: jobToRunSpec,
    name: config.name ?? defaultRunnerName(dataDir),
    zone: config.zone ?? 'default',
    capacity: config.capacity ?? 2,
    labels: config.labels ?? {},
    logger: config.logger,
    host,
    memory,
    ...(config.slotMemoryBytes !== undefined ? { slotMemoryBytes: config.slotMemoryBytes } : {}),
  });
  await agent.start();
  return {
    agent,
    languages,
    driver,
    sessions,
    stop: async () => {
      await agent.stop();
      await sessions.stop();
      await driver.drain().catch(() => {});
    },
  };
}
