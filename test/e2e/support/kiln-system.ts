import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KilnClient } from '@kiln/sdk';
import { createPostgresDatabase, type TestDatabase } from '../../support/databases.js';

/**
 * A whole kiln for end-to-end tests: the real `kiln server` and `kiln runner` processes (the built CLI),
 * real sandboxes, SQLite or PostgreSQL. Fleet timings are shortened so liveness tests stay quick.
 */

const CLI = resolve(import.meta.dirname, '../../../packages/cli/bin/kiln.js');

export type DbKind = 'sqlite' | 'postgres';

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? done(addr.port) : fail(new Error('no port'))));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value that is not undefined/false, or throws after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}

interface Proc {
  child: ChildProcess;
  output: string[];
}

function spawnCli(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (b: Buffer) => {
    output.push(b.toString());
    if (output.length > 400) output.splice(0, 200);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output };
}

async function stopProc(proc: Proc, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export interface RunnerOptions {
  name?: string;
  zone?: string;
  capacity?: number;
  /** Extra KILN_* variables for this runner (e.g. its memory budget). */
  env?: Record<string, string>;
  /** The folder (under the system's) that holds its state and credential. @default its name */
  dataDirName?: string;
}

export interface RunnerProcess {
  name: string;
  zone: string;
  proc: Proc;
  /** Kills the runner process at once (SIGKILL), as a crashed node. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export class KilnSystem {
  readonly adminKey = `kiln_admin_${randomBytes(16).toString('hex')}`;
  readonly runnerToken = `kiln_runner_${randomBytes(16).toString('hex')}`;
  readonly dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-'));
  readonly runners: RunnerProcess[] = [];
  url = '';
  private server: Proc | undefined;
  private readonly replicas: Proc[] = [];
  private port = 0;
  private database: TestDatabase | undefined;

  /** `serverEnv`: extra KILN_* variables for the control plane (e.g. an S3 artifact store). */
  constructor(
    readonly db: DbKind,
    private readonly serverEnvExtra: Record<string, string> = {},
  ) {}

  /** The operator's client. */
  get operator(): KilnClient {
    return new KilnClient({ url: this.url, apiKey: this.adminKey });
  }

  client(apiKey: string): KilnClient {
    return new KilnClient({ url: this.url, apiKey });
  }

  private serverEnv(): Record<string, string> {
    return {
      KILN_ADMIN_KEY: this.adminKey,
      KILN_RUNNER_TOKEN: this.runnerToken,
      KILN_HEARTBEAT_INTERVAL_MS: '500',
      KILN_RUNNER_DEGRADED_AFTER_MS: '1500',
      KILN_RUNNER_OFFLINE_AFTER_MS: '3000',
      KILN_LEASE_TTL_MS: '6000',
      ...(this.database ? { KILN_DATABASE_URL: this.database.url } : {}),
      ...this.serverEnvExtra,
    };
  }

  async startServer(): Promise<void> {
    if (this.db === 'postgres' && !this.database) this.database = await createPostgresDatabase();
    if (!this.port) this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.server = spawnCli(['server', '--port', String(this.port), '--data-dir', join(this.dir, 'server')], this.serverEnv());
    const proc = this.server;
    await eventually(
      'the server to answer /readyz',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`server exited: ${proc.output.join('')}`);
        const res = await fetch(`${this.url}/readyz`).catch(() => undefined);
        return res?.ok;
      },
      30_000,
    );
  }

  /**
   * Another control-plane replica on the same PostgreSQL database: its own port and data dir, the keys
   * and artifact store every replica must share (pass them in the constructor's env), its URL answered.
   */
  async startReplica(): Promise<{ url: string; kill: () => Promise<void> }> {
    if (this.db !== 'postgres' || !this.database) throw new Error('replicas share one PostgreSQL database: start the first server on postgres');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = spawnCli(['server', '--port', String(port), '--data-dir', join(this.dir, `replica-${port}`)], this.serverEnv());
    this.replicas.push(proc);
    await eventually(
      'the replica to answer /readyz',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`replica exited: ${proc.output.join('')}`);
        const res = await fetch(`${url}/readyz`).catch(() => undefined);
        return res?.ok;
      },
      30_000,
    );
    return { url, kill: () => stopProc(proc, 'SIGKILL') };
  }

  /** Kills the server at once (SIGKILL), as a crash. */
  async killServer(): Promise<void> {
    if (this.server) await stopProc(this.server, 'SIGKILL');
  }

  async stopServer(): Promise<void> {
    if (this.server) await stopProc(this.server);
  }

  async startRunner(options: RunnerOptions = {}): Promise<RunnerProcess> {
    const name = options.name ?? `runner-${this.runners.length + 1}`;
    const zone = options.zone ?? 'default';
    const args = [
      'runner',
      '--server', this.url,
      '--zone', zone,
      '--capacity', String(options.capacity ?? 2),
      '--name', name,
      '--data-dir', join(this.dir, options.dataDirName ?? name),
    ];
    // The join token travels in the environment, never in argv (where `ps` shows it).
    const proc = spawnCli(args, { ...(options.env ?? {}), KILN_RUNNER_TOKEN: this.runnerToken });
    const runner: RunnerProcess = {
      name,
      zone,
      proc,
      kill: () => stopProc(proc, 'SIGKILL'),
      stop: () => stopProc(proc),
    };
    this.runners.push(runner);
    await eventually(
      `runner ${name} to register and be healthy`,
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`runner exited: ${proc.output.join('')}`);
        const list = await this.operator.runners.list({ limit: 200 });
        return list.items.find((r) => r.name === name && r.status === 'healthy');
      },
      60_000,
    );
    return runner;
  }

  /** A tenant with a tenant-admin client, an agent and an agent client. */
  async newTenant(name = `t-${randomBytes(3).toString('hex')}`) {
    const tenant = await this.operator.tenants.create({ name });
    const tenantKey = await this.operator.tenants.createKey(tenant.id);
    const admin = this.client(tenantKey.key);
    const agent = await admin.agents.create({ name: 'agent-1' });
    const agentKey = await admin.agents.createKey(agent.id);
    return { tenant, admin, agent, agentClient: this.client(agentKey.key) };
  }

  logs(): string {
    return [this.server?.output.join('') ?? '', ...this.runners.map((r) => `--- ${r.name}\n${r.proc.output.join('')}`)].join('\n');
  }

  async close(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.stop()));
    await Promise.all(this.replicas.map((p) => stopProc(p)));
    await this.stopServer();
    await this.database?.drop().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
