import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { startRunner, type RunningRunner } from '@kiln/runner';
import { addControlPlaneOptions, runControlPlane, type ControlPlaneFlags } from './server.js';

/**
 * `kiln up`: everything on one machine with embedded defaults: the control plane (SQLite and artifacts
 * in the data dir) and one local runner in the same process tree, joined by a runner token made for
 * this start unless KILN_RUNNER_TOKEN names one.
 */
export function registerUp(program: Command): void {
  addControlPlaneOptions(
    program
      .command('up')
      .description('start kiln on this machine: control plane and one local runner (SQLite, local disk; root)'),
  )
    .option('--capacity <n>', 'jobs the local runner runs at once (KILN_CAPACITY, default: the number of CPUs)')
    .action(async (flags: ControlPlaneFlags & { capacity?: string }) => {
      process.env.KILN_RUNNER_TOKEN ??= `kiln_runner_${randomBytes(24).toString('base64url')}`;
      const token = process.env.KILN_RUNNER_TOKEN;
      let runner: RunningRunner | undefined;
      const server = await runControlPlane(flags, 'up', { beforeClose: async () => runner?.stop() });
      const dataDir = resolve(flags.dataDir ?? process.env.KILN_DATA_DIR ?? './.kiln');
      const capacity = Number(flags.capacity ?? process.env.KILN_CAPACITY ?? availableParallelism());
      if (!Number.isInteger(capacity) || capacity < 1) throw new Error('--capacity must be a whole number of at least 1');
      runner = await startRunner({
        serverUrl: server.url,
        token,
        capacity,
        name: 'local',
        dataDir: join(dataDir, 'runner'),
        logger: pino({ name: 'kiln-runner', level: process.env.KILN_LOG_LEVEL ?? 'warn' }),
      });
      const languages = runner.languages.map((l) => l.name).join(', ');
      process.stderr.write(`kiln up: local runner ready (capacity ${capacity}; ${languages})\n`);
    });
}
