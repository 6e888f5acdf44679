import { InvalidArgumentError, type Command } from 'commander';
import type { RunningServer, ServerConfig } from '@kiln/server';

/** Flags shared by `kiln server` and `kiln up`; each wins over its KILN_* variable. */
export interface ControlPlaneFlags {
  port?: number;
  host?: string;
  dataDir?: string;
}

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('must be a TCP port (0-65535)');
  return port;
}

export function addControlPlaneOptions(command: Command): Command {
  return command
    .option('--port <port>', 'port to listen on (KILN_PORT, default 8080)', parsePort)
    .option('--host <host>', 'address to listen on (KILN_HOST, default 127.0.0.1)')
    .option('--data-dir <dir>', 'SQLite database, operator key and artifacts (KILN_DATA_DIR, default ./.kiln)');
}

function overridesFrom(flags: ControlPlaneFlags): Partial<ServerConfig> {
  const overrides: Partial<ServerConfig> = {};
  if (flags.port !== undefined) overrides.port = flags.port;
  if (flags.host !== undefined) overrides.host = flags.host;
  if (flags.dataDir !== undefined) overrides.dataDir = flags.dataDir;
  return overrides;
}

/**
 * Starts the control plane from flags and KILN_* variables, prints where it is and where the operator
 * key is (the key itself only on the start that generated it), and shuts down cleanly on SIGTERM/SIGINT.
 */
export interface ControlPlaneHooks {
  /** Runs on SIGTERM/SIGINT before the control plane closes (e.g. stopping `kiln up`'s local runner). */
  beforeClose?: () => Promise<void>;
}

export async function runControlPlane(flags: ControlPlaneFlags, what: string, hooks: ControlPlaneHooks = {}): Promise<RunningServer> {
  // Loaded here, not at the top: `kiln exec` and `kiln run` should not pay for the server's dependencies.
  const { loadServerConfig, startServer } = await import('@kiln/server');
  const config = loadServerConfig(process.env, overridesFrom(flags));
  const server = await startServer(config);
  const out = (line: string) => process.stderr.write(`${line}\n`);
  out(`kiln ${what}: listening on ${server.url} (database: ${server.store.dialect})`);
  if (server.adminKey.generated) {
    out(`kiln: generated the operator key (shown once; also saved in ${server.adminKey.file}, mode 0600):`);
    out(`  ${server.adminKey.key}`);
  } else if (server.adminKey.file) {
    out(`kiln: operator key is in ${server.adminKey.file}`);
  } else {
    out('kiln: operator key is the one in KILN_ADMIN_KEY');
  }
  out(`kiln: dashboard at ${server.url}/ui (sign in with a kiln key)`);
  out(`kiln: API docs at ${server.url}/docs`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    out(`kiln: ${signal}, shutting down`);
    (hooks.beforeClose ?? (async () => {}))()
      .catch((err: unknown) => out(`kiln: ${err instanceof Error ? err.message : String(err)}`))
      .then(() => server.close())
      .then(
      () => process.exit(0),
      (err: unknown) => {
        out(`kiln: shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return server;
}

export function registerServer(program: Command): void {
  addControlPlaneOptions(
    program.command('server').description('start the control plane (API, auth, audit; SQLite or KILN_DATABASE_URL)'),
  ).action(async (flags: ControlPlaneFlags) => {
    await runControlPlane(flags, 'server');
  });
}
