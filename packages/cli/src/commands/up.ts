import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { addControlPlaneOptions, runControlPlane, type ControlPlaneFlags } from './server.js';

const KILN_BIN = fileURLToPath(new URL('../../bin/kiln.js', import.meta.url));

/** `kiln up`'s default capacity per CPU. */
const JOBS_PER_CPU = 4;

/**
 * The local runner as a child process of `kiln up`: its own event loop (on 2 cores the control plane
 * and the runner each get one), restarted if it dies, and gone with its parent (it exits when the pipe
 * on its stdin closes, even if `kiln up` is killed outright).
 */
class LocalRunner {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restartDelayMs = 500;

  constructor(private readonly args: string[], private readonly env: NodeJS.ProcessEnv) {}

  /** Starts the runner and resolves once it says it is ready (with the languages it found). */
  start(): Promise<string> {
    return new Promise((resolveReady, rejectReady) => {
      // A profiled `kiln up` (node --cpu-prof …) profiles its runner too: the benchmarks read both.
      const profiling = process.execArgv.filter((a) => a.startsWith('--cpu-prof'));
      const child = spawn(process.execPath, [...profiling, KILN_BIN, 'runner', ...this.args], {
        env: { ...this.env, KILN_EXIT_WITH_PARENT: '1' },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      this.child = child;
      let ready = false;
      let buffered = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const line = /^kiln runner: ready (.*)$/m.exec(buffered);
        if (line && !ready) {
          ready = true;
          this.restartDelayMs = 500;
          resolveReady(line[1]!);
        }
        if (buffered.length > 65536) buffered = buffered.slice(-4096);
      });
      child.once('exit', (code, signal) => {
        if (this.stopping) return;
        const why = signal ?? `exit code ${code}`;
        if (!ready) return rejectReady(new Error(`the local runner stopped before it was ready (${why})`));
        process.stderr.write(`kiln up: the local runner stopped (${why}); restarting it\n`);
        setTimeout(() => void this.start().catch((err: Error) => process.stderr.write(`kiln up: ${err.message}\n`)), this.restartDelayMs);
        this.restartDelayMs = Math.min(this.restartDelayMs * 2, 30_000);
      });
    });
  }

  /** SIGTERM, then the runner's own grace period for running jobs, then SIGKILL. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** What the control plane holds and a runner must never see: database, operator and storage secrets. */
const CONTROL_PLANE_ONLY = /^(KILN_ADMIN_KEY|KILN_DATABASE_URL|KILN_S3_.*|KILN_ARTIFACTS_URL|AWS_.*|PG.*)$/;

export function runnerEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !CONTROL_PLANE_ONLY.test(name)));
}

/**
 * `kiln up`: everything on one machine with embedded defaults: the control plane (SQLite and artifacts
 * in the data dir) and one local runner, joined by a runner token made for this start unless
 * KILN_RUNNER_TOKEN names one.
 */
export function registerUp(program: Command): void {
  addControlPlaneOptions(
    program
      .command('up')
      .description('start kiln on this machine: control plane and one local runner (SQLite, local disk; root)'),
  )
    .option('--capacity <n>', 'jobs the local runner runs at once (KILN_CAPACITY, default: 4 per CPU)')
    .action(async (flags: ControlPlaneFlags & { capacity?: string }) => {
      process.env.KILN_RUNNER_TOKEN ??= `kiln_runner_${randomBytes(24).toString('base64url')}`;
      // Measured (README, jobs benchmark): sandboxes spend much of their life starting and waiting, so
      // 4 jobs per CPU keep the CPUs busy where 1 per CPU leaves them idle between jobs; the runner's
      // memory budget still caps what runs at once.
      const capacity = Number(flags.capacity ?? process.env.KILN_CAPACITY ?? availableParallelism() * JOBS_PER_CPU);
      if (!Number.isInteger(capacity) || capacity < 1) throw new Error('--capacity must be a whole number of at least 1');
      let runner: LocalRunner | undefined;
      const server = await runControlPlane(flags, 'up', { beforeClose: async () => runner?.stop() });
      const dataDir = resolve(flags.dataDir ?? process.env.KILN_DATA_DIR ?? './.kiln');
      // The token travels in the environment, never on the command line (where `ps` shows it).
      runner = new LocalRunner(
        ['--server', server.url, '--capacity', String(capacity), '--name', 'local', '--data-dir', join(dataDir, 'runner')],
        { ...runnerEnvironment(process.env), KILN_LOG_LEVEL: process.env.KILN_LOG_LEVEL ?? 'warn' },
      );
      const languages = await runner.start();
      process.stderr.write(`kiln up: local runner ready (capacity ${capacity}; ${languages})\n`);
    });
}
