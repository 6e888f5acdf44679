import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger, defaultLogFormat } from '@kiln/server';
import { assertPrivate, startRunner } from '@kiln/runner';

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

function parseNonNegativeInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number of at least 0`);
  return n;
}

/**
 * The join token, from KILN_RUNNER_TOKEN or a file (`--token-file`), never from the command line: every
 * local user reads a process's argv with `ps`. A token file others may read is refused like a data dir.
 */
export function readRunnerToken(opts: { token?: string; tokenFile?: string }, env: NodeJS.ProcessEnv): string {
  if (opts.token !== undefined) {
    throw new Error(
      '--token is not taken: a token on the command line is visible to every local user (ps). ' +
        'Set KILN_RUNNER_TOKEN or pass --token-file PATH (a file of mode 0600).',
    );
  }
  if (opts.tokenFile !== undefined) {
    assertPrivate(opts.tokenFile, 'the token file');
    const token = readFileSync(opts.tokenFile, 'utf8').trim();
    if (!token) throw new Error(`${opts.tokenFile} is empty; it must hold the runner join token`);
    return token;
  }
  if (env.KILN_RUNNER_TOKEN) return env.KILN_RUNNER_TOKEN;
  throw new Error('no runner join token: set KILN_RUNNER_TOKEN or pass --token-file PATH');
}

export function registerRunner(program: Command): void {
  program
    .command('runner')
    .description('run one runner node: takes jobs from the control plane and runs them in sandboxes (root)')
    .option('--server <url>', 'the control plane URL (KILN_SERVER_URL)')
    .option('--token-file <path>', 'a file (mode 0600) holding the fleet\'s join token; or set KILN_RUNNER_TOKEN')
    .addOption(new Option('--token <token>', 'refused: a token in argv is visible to every local user').hideHelp())
    .option('--zone <zone>', 'the zone this node is in (KILN_ZONE)', undefined)
    .option('--capacity <n>', 'jobs run at once (KILN_CAPACITY)', parsePositiveInt)
    .option('--name <name>', 'this node\'s stable name (KILN_RUNNER_NAME); default from host and data dir')
    .option('--data-dir <dir>', 'where the runner keeps its state (KILN_DATA_DIR)')
    .action(async (opts: { server?: string; token?: string; tokenFile?: string; zone?: string; capacity?: number; name?: string; dataDir?: string }) => {
      const env = process.env;
      const serverUrl = opts.server ?? env.KILN_SERVER_URL;
      const token = readRunnerToken(opts, env);
      if (!serverUrl) throw new Error('no control plane: pass --server URL or set KILN_SERVER_URL');
      // Logs go to stderr: stdout carries the one "ready" line a supervising `kiln up` reads.
      const format = env.KILN_LOG_FORMAT === 'json' || env.KILN_LOG_FORMAT === 'pretty' ? env.KILN_LOG_FORMAT : defaultLogFormat(process.stderr);
      const logger = createLogger({ name: 'kiln-runner', level: env.KILN_LOG_LEVEL ?? 'info', format, fd: 2 });
      const capacityFromEnv = env.KILN_CAPACITY ? parsePositiveInt(env.KILN_CAPACITY) : undefined;
      const zone = opts.zone ?? env.KILN_ZONE;
      const name = opts.name ?? env.KILN_RUNNER_NAME;
      const memoryBudgetBytes = env.KILN_RUNNER_MEMORY_BUDGET_BYTES ? parsePositiveInt(env.KILN_RUNNER_MEMORY_BUDGET_BYTES) : undefined;
      const slotMemoryBytes = env.KILN_RUNNER_SLOT_MEMORY_BYTES ? parsePositiveInt(env.KILN_RUNNER_SLOT_MEMORY_BYTES) : undefined;
      // KILN_RUNNER_POOL_SIZE=0 turns the warm pool off.
      const poolPerShape = env.KILN_RUNNER_POOL_SIZE !== undefined && env.KILN_RUNNER_POOL_SIZE !== '' ? parseNonNegativeInt(env.KILN_RUNNER_POOL_SIZE, 'KILN_RUNNER_POOL_SIZE') : undefined;
      const poolIdleMs = env.KILN_RUNNER_POOL_IDLE_MS ? parsePositiveInt(env.KILN_RUNNER_POOL_IDLE_MS) : undefined;
      const runner = await startRunner({
        serverUrl,
        token,
        ...(zone ? { zone } : {}),
        ...(opts.capacity ?? capacityFromEnv ? { capacity: opts.capacity ?? capacityFromEnv! } : {}),
        ...(name ? { name } : {}),
        ...(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {}),
        ...(slotMemoryBytes !== undefined ? { slotMemoryBytes } : {}),
        ...(poolPerShape !== undefined ? { poolPerShape } : {}),
        ...(poolIdleMs !== undefined ? { poolIdleMs } : {}),
        dataDir: opts.dataDir ?? env.KILN_DATA_DIR ?? './.kiln/runner',
        ...(env.KILN_RUNNER_SESSION_LISTEN ? { sessionListen: env.KILN_RUNNER_SESSION_LISTEN } : {}),
        ...(env.KILN_RUNNER_SESSION_ADDRESS ? { sessionAddress: env.KILN_RUNNER_SESSION_ADDRESS } : {}),
        logger,
      });
      logger.info({ runner_id: runner.agent.id, server: serverUrl }, 'runner started');
      // For a supervising parent (`kiln up`): one line that says the node is ready, and what it offers.
      process.stdout.write(`kiln runner: ready ${runner.languages.map((l) => l.name).join(', ')}\n`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const shutdown = (signal: string) => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, 'stopping: running jobs get a grace period');
          process.stdin.destroy();
          void runner.stop().then(resolve);
        };
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        process.once('SIGINT', () => shutdown('SIGINT'));
        if (env.KILN_EXIT_WITH_PARENT === '1') {
          // The parent holds the other end of stdin: end of file means it is gone, however it died.
          process.stdin.once('close', () => shutdown('parent gone'));
          process.stdin.resume();
        }
      });
    });
}
