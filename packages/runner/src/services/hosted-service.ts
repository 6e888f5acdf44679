import { EventEmitter } from 'node:events';
import http from 'node:http';
import { openInitTunnel, runInitCommand, type PersistentSandbox } from '../sandbox/persistent/index.js';

/** Output of a service kept for `logs` (from the start; past it, the oldest chunks go). */
export const SERVICE_LOG_MAX_BYTES = 1024 * 1024;
/** Restarts `on-failure` makes before the service is given up as crashed. */
export const MAX_RESTARTS = 5;
/** How often a starting service's port (and readiness path) is tried. */
const PROBE_INTERVAL_MS = 100;
/** One readiness request may take this long. */
const PROBE_TIMEOUT_MS = 2000;

export type ServiceRunnerState = 'starting' | 'running' | 'ended';
export type ServiceRunnerEndReason = 'crashed' | 'exited' | 'readiness_timeout';

export interface ServiceSpec {
  service_id: string;
  command: string | string[];
  port: number;
  env: Record<string, string>;
  readiness: { path: string | null; timeout_ms: number };
  restart: 'never' | 'on-failure';
  /** The command is killed past this (its TTL plus a margin): the control plane ends it before. */
  max_run_ms: number;
}

export interface LogChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/**
 * One service in its persistent sandbox: runs the command, probes readiness, restarts it on failure
 * (bounded, with back-off), and keeps a bounded log. The control plane reads its state by polling.
 */
export class HostedService extends EventEmitter {
  state: ServiceRunnerState = 'starting';
  reason: ServiceRunnerEndReason | null = null;
  restarts = 0;
  lastExit: { code: number | null; signal: number | null } | null = null;
  private readonly log: LogChunk[] = [];
  private logBytes = 0;
  private droppedBytes = 0;
  private current: AbortController | undefined;
  private stopped = false;
  private readonly startedAtMs = Date.now();

  constructor(
    readonly sandbox: PersistentSandbox,
    readonly spec: ServiceSpec,
    readonly relayPath: string,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** Starts the command and the readiness probe; returns at once. */
  start(): void {
    void this.runLoop();
    void this.probe();
  }

  /** The log so far, and how many bytes of its beginning were dropped. */
  history(): { chunks: LogChunk[]; dropped_bytes: number } {
    return { chunks: [...this.log], dropped_bytes: this.droppedBytes };
  }

  /** Kills the command for good (the sandbox is destroyed by the caller). */
  stop(): void {
    this.stopped = true;
    this.current?.abort();
  }

  private end(reason: ServiceRunnerEndReason): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.reason = reason;
    this.stop();
    this.emit('state');
  }

  private append(stream: 'stdout' | 'stderr', data: Buffer): void {
    const chunk = { stream, data };
    this.log.push(chunk);
    this.logBytes += data.length;
    while (this.logBytes > SERVICE_LOG_MAX_BYTES && this.log.length > 1) {
      const old = this.log.shift()!;
      this.logBytes -= old.data.length;
      this.droppedBytes += old.data.length;
    }
    this.emit('log', chunk);
  }

  private async runLoop(): Promise<void> {
    const argv = typeof this.spec.command === 'string' ? ['/bin/sh', '-c', this.spec.command] : this.spec.command;
    while (!this.stopped) {
      const abort = new AbortController();
      this.current = abort;
      try {
        const result = await runInitCommand(
          this.sandbox.hostPaths.controlSocket,
          { argv, env: this.sandbox.commandEnv(this.spec.env), cwd: '/workspace', timeoutMs: this.spec.max_run_ms },
          {
            outputLimitBytes: SERVICE_LOG_MAX_BYTES,
            keepOutput: false,
            onStdout: (c) => this.append('stdout', c),
            onStderr: (c) => this.append('stderr', c),
            signal: abort.signal,
          },
        );
        this.lastExit = { code: result.exit.code, signal: result.exit.signalNumber };
      } catch (err) {
        this.append('stderr', Buffer.from(`kiln: the service command could not run: ${(err as Error).message}\n`));
        this.lastExit = { code: null, signal: null };
      }
      if (this.stopped || this.state === 'ended') return;
      const failed = this.lastExit.code !== 0;
      if (!failed) return this.end('exited');
      if (this.spec.restart !== 'on-failure' || this.restarts >= MAX_RESTARTS) return this.end('crashed');
      this.restarts++;
      this.append('stderr', Buffer.from(`kiln: the service exited (${describeExit(this.lastExit)}); restart ${this.restarts} of ${MAX_RESTARTS}\n`));
      this.emit('state');
      // Back-off: 200 ms, 400 ms, 800 ms, then 1 s, so a command that fails at once does not spin.
      await sleep(Math.min(200 * 2 ** (this.restarts - 1), 1000));
    }
  }

  /** Until the port answers (and the readiness path gives 2xx) or the readiness timeout passes. */
  private async probe(): Promise<void> {
    const deadline = this.startedAtMs + this.spec.readiness.timeout_ms;
    while (this.state === 'starting' && !this.stopped) {
      if (await this.ready()) {
        if (this.state !== 'starting') return;
        this.state = 'running';
        this.emit('state');
        return;
      }
      if (Date.now() >= deadline) return this.end('readiness_timeout');
      await sleep(PROBE_INTERVAL_MS);
    }
  }

  private async ready(): Promise<boolean> {
    if (!this.sandbox.alive) return false;
    if (this.spec.readiness.path === null) {
      try {
        const tunnel = await openInitTunnel(this.sandbox.hostPaths.controlSocket, this.spec.port);
        tunnel.destroy();
        return true;
      } catch {
        return false;
      }
    }
    return new Promise<boolean>((resolve) => {
      const req = http.request(
        { socketPath: this.relayPath, path: this.spec.readiness.path!, method: 'GET', headers: { host: 'localhost' }, timeout: PROBE_TIMEOUT_MS },
        (res) => {
          res.resume();
          resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300);
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
  }
}

function describeExit(exit: { code: number | null; signal: number | null }): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
