import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  adminUrl: string;
  description: string;
  stop: () => Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function findPgBin(): string {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) throw new Error('no PostgreSQL found: install Debian\'s postgresql (scripts/setup.sh does)');
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, 'bin');
    if (existsSync(join(bin, 'initdb'))) return bin;
  }
  throw new Error('no initdb under /usr/lib/postgresql');
}

/**
 * The tests' PostgreSQL, in this order: KILN_TEST_DATABASE_URL; the server on 127.0.0.1:5432 (user
 * postgres, trust auth); a throwaway cluster of our own (initdb in a temp folder, a free port).
 */
export async function findOrStartPostgres(): Promise<TestPostgres> {
  const fromEnv = process.env.KILN_TEST_DATABASE_URL;
  if (fromEnv) return { adminUrl: fromEnv, description: 'KILN_TEST_DATABASE_URL', stop: async () => {} };

  const local = 'postgres://postgres@127.0.0.1:5432/postgres';
  // KILN_TEST_PG=throwaway skips the local server, to exercise the path a machine without one takes.
  if (process.env.KILN_TEST_PG !== 'throwaway' && (await answers(local))) {
    return { adminUrl: local, description: '127.0.0.1:5432', stop: async () => {} };
  }

  const bin = findPgBin();
  const dir = mkdtempSync(join(tmpdir(), 'kiln-pg-'));
  chmodSync(dir, 0o777);
  const dataDir = join(dir, 'data');
  const port = await freePort();
  // PostgreSQL refuses to run as root; Debian's package made the postgres user.
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const run = (cmd: string[]) => execFileSync(cmd[0]!, cmd.slice(1), { stdio: 'pipe' });
  run([...asPostgres, join(bin, 'initdb'), '-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
  const server = spawn(
    asPostgres[0] ?? join(bin, 'postgres'),
    [...asPostgres.slice(1), ...(asPostgres.length ? [join(bin, 'postgres')] : []),
      '-D', dataDir, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    { stdio: 'ignore' },
  );
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  for (let i = 0; i < 100 && !(await answers(url)); i++) await new Promise((r) => setTimeout(r, 200));
  if (!(await answers(url))) throw new Error('the throwaway PostgreSQL did not start');
  return {
    adminUrl: url,
    description: `throwaway cluster on port ${port}`,
    stop: async () => {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
