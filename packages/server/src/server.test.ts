import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase } from '../../../test/support/databases.js';
import { auditCheckpointFile, loadServerConfig, redactConfig, resolveAdminKey, resolveAuditKey } from './config.js';
import { startServer } from './server.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-server-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('loadServerConfig', () => {
  it('has defaults for one machine', () => {
    const config = loadServerConfig({});
    expect(config).toMatchObject({ port: 8080, host: '127.0.0.1', bodyLimitBytes: 1024 * 1024, databaseUrl: undefined });
    expect(config.dataDir).toBe(join(process.cwd(), '.kiln'));
  });

  it('reads the HTTP limits, never a request timeout below the headers timeout', () => {
    const config = loadServerConfig({ KILN_HTTP_HEADERS_TIMEOUT_MS: '8000', KILN_HTTP_REQUEST_TIMEOUT_MS: '2000', KILN_HTTP_MAX_CONNECTIONS: '64' });
    expect(config.http).toMatchObject({ headersTimeoutMs: 8000, requestTimeoutMs: 8000, maxConnections: 64, maxConnectionsPerSource: 256 });
    expect(config.authRefusals).toEqual({ windowMs: 60_000, maxSources: 10_000 });
  });

  it('reads KILN_* variables, and an override (a flag) wins over its variable', () => {
    const env = { KILN_PORT: '9000', KILN_HOST: '0.0.0.0', KILN_BODY_LIMIT_BYTES: '2048', KILN_DATA_DIR: '/srv/kiln' };
    expect(loadServerConfig(env)).toMatchObject({ port: 9000, host: '0.0.0.0', bodyLimitBytes: 2048, dataDir: '/srv/kiln' });
    expect(loadServerConfig(env, { port: 7000, dataDir: '/tmp/x' })).toMatchObject({ port: 7000, dataDir: '/tmp/x' });
  });

  it('reads the storage quota and retention, 0 keeping forever', () => {
    expect(loadServerConfig({})).toMatchObject({
      artifactRetentionSeconds: 7 * 86_400,
      jobRetentionSeconds: 30 * 86_400,
    });
    const env = { KILN_ARTIFACT_RETENTION_SECONDS: '0', KILN_JOB_RETENTION_SECONDS: '3600' };
    expect(loadServerConfig(env)).toMatchObject({ artifactRetentionSeconds: 0, jobRetentionSeconds: 3600 });
    expect(() => loadServerConfig({ KILN_JOB_RETENTION_SECONDS: '-1' })).toThrow(
      expect.objectContaining({ field: 'env.KILN_JOB_RETENTION_SECONDS' }),
    );
  });

  it('names the variable at fault', () => {
    for (const [name, value] of [
      ['KILN_PORT', '70000'],
      ['KILN_PORT', 'http'],
      ['KILN_DATABASE_URL', 'mysql://x'],
      ['KILN_ADMIN_KEY', 'short'],
      ['KILN_BODY_LIMIT_BYTES', '10'],
      ['KILN_AUDIT_KEY', 'short'],
      ['KILN_HTTP_MAX_CONNECTIONS', '0'],
      ['KILN_HTTP_HEADERS_TIMEOUT_MS', 'soon'],
    ] as const) {
      expect(() => loadServerConfig({ [name]: value }), `${name}=${value}`).toThrow(
        expect.objectContaining({ code: 'VALIDATION_FAILED', field: `env.${name}` }),
      );
    }
    expect(() => loadServerConfig({}, { port: -1 })).toThrow(expect.objectContaining({ field: 'port' }));
  });

  it('redacts secrets before the configuration is logged', () => {
    const config = loadServerConfig({
      KILN_ADMIN_KEY: 'admin-secret-0123456789',
      KILN_RUNNER_TOKEN: 'runner-secret-0123456789',
      KILN_DATABASE_URL: 'postgres://kiln:pg-password@db:5432/kiln',
    });
    const logged = JSON.stringify(redactConfig(config));
    for (const secret of ['admin-secret-0123456789', 'runner-secret-0123456789', 'pg-password']) {
      expect(logged).not.toContain(secret);
    }
    expect(logged).toContain('db:5432');
  });
});

describe('resolveAdminKey', () => {
  it('generates the operator key once, mode 0600, and reads it back afterwards', () => {
    const config = loadServerConfig({ KILN_DATA_DIR: join(tempDir(), 'nested') });
    const first = resolveAdminKey(config);
    expect(first.generated).toBe(true);
    expect(first.key).toMatch(/^kiln_operator_[0-9a-f]{64}$/);
    expect(statSync(first.file!).mode & 0o777).toBe(0o600);
    expect(readFileSync(first.file!, 'utf8').trim()).toBe(first.key);
    const second = resolveAdminKey(config);
    expect(second).toEqual({ key: first.key, file: first.file, generated: false });
  });

  it('uses KILN_ADMIN_KEY when set and writes nothing', () => {
    const dir = tempDir();
    const resolved = resolveAdminKey(loadServerConfig({ KILN_DATA_DIR: dir, KILN_ADMIN_KEY: 'configured-key-0123456789' }));
    expect(resolved).toEqual({ key: 'configured-key-0123456789', file: undefined, generated: false });
  });
});

describe('resolveAuditKey', () => {
  it('generates the audit key once into the data dir, mode 0600, apart from the database', () => {
    const config = loadServerConfig({ KILN_DATA_DIR: join(tempDir(), 'nested') });
    const first = resolveAuditKey(config);
    expect(first).toMatchObject({ generated: true, file: join(config.dataDir, 'audit.key') });
    expect(first.key.length).toBeGreaterThanOrEqual(32);
    expect(statSync(first.file!).mode & 0o777).toBe(0o600);
    expect(resolveAuditKey(config)).toEqual({ key: first.key, file: first.file, generated: false });
    expect(resolveAdminKey(config).key).not.toBe(first.key);
  });

  it('uses KILN_AUDIT_KEY when set, and never logs it', () => {
    const config = loadServerConfig({ KILN_DATA_DIR: tempDir(), KILN_AUDIT_KEY: 'audit-secret-0123456789' });
    expect(resolveAuditKey(config)).toEqual({ key: 'audit-secret-0123456789', file: undefined, generated: false });
    expect(JSON.stringify(redactConfig(config))).not.toContain('audit-secret-0123456789');
  });
});

describe.each(['sqlite', 'postgres'] as const)('startServer on %s', (kind) => {
  it('listens, serves the API, closes, and starts again on the same data', async () => {
    const database = kind === 'postgres' ? await createPostgresDatabase() : undefined;
    const env = { KILN_DATA_DIR: tempDir(), KILN_PORT: '0', KILN_LOG_LEVEL: 'silent', KILN_DATABASE_URL: database?.url };
    try {
      const server = await startServer(loadServerConfig(env));
      expect(server.store.dialect).toBe(kind);
      const auth = { authorization: `Bearer ${server.adminKey.key}`, 'content-type': 'application/json' };
      expect(await (await fetch(`${server.url}/readyz`)).json()).toEqual({ ok: true });
      const created = await fetch(`${server.url}/v1/tenants`, { method: 'POST', headers: auth, body: '{"name":"persist"}' });
      expect(created.status).toBe(201);
      await server.close();
      await server.close(); // twice is fine
      await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();

      const again = await startServer(loadServerConfig(env));
      const list = await (await fetch(`${again.url}/v1/tenants`, { headers: auth })).json();
      expect(list.items.map((t: { name: string }) => t.name)).toEqual(['persist']);
      const verify = await (await fetch(`${again.url}/v1/audit-events/verify?tenant_id=${list.items[0].id}`, { headers: auth })).json();
      // The first run's last checkpoint (written at close, outside the database) anchors the chain.
      expect(verify).toMatchObject({ ok: true, count: 1, keyed_from_seq: 1, checkpoint: { seq: 1 } });
      expect(statSync(auditCheckpointFile(loadServerConfig(env))).mode & 0o777).toBe(0o600);
      await again.close();
    } finally {
      await database?.drop();
    }
  });
});

/** Issue 7, point 7: nothing secret is readable on the host. */
describe('the data dir', () => {
  const modes = (dir: string): [string, number][] =>
    readdirSync(dir, { recursive: true, withFileTypes: true }).map((e) => {
      const path = join(e.parentPath, e.name);
      return [path.slice(dir.length + 1), statSync(path).mode & 0o777];
    });

  it('is made 0700 with every file in it 0600 on a fresh start, and the secret_env value is in no file', async () => {
    const dataDir = join(tempDir(), 'fresh');
    const runnerToken = 'join-token-0123456789abcdef';
    const server = await startServer(loadServerConfig({ KILN_DATA_DIR: dataDir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent', KILN_RUNNER_TOKEN: runnerToken }));
    const secret = `sealed-${randomBytes(16).toString('hex')}`;
    try {
      const post = (path: string, key: string, body: unknown) =>
        fetch(`${server.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const runner = await (await post('/v1/runner/register', runnerToken, { name: 'n', zone: 'z', capacity: 1, address: null, languages: [{ name: 'python', version: '3' }] })).json();
      const tenant = await (await post('/v1/tenants', server.adminKey.key, { name: 'modes' })).json();
      const key = await (await post(`/v1/tenants/${tenant.id}/keys`, server.adminKey.key, {})).json();
      const job = await post('/v1/jobs', key.key, { language: 'python', code: 'print(1)', secret_env: { TOKEN: secret } });
      expect(job.status).toBe(201);
      const answer = await job.text();
      expect(answer).not.toContain(secret);
      const leased = await (await post('/v1/runner/lease', runner.credential, { free_slots: 1, wait_ms: 0 })).json();
      expect(leased.leases[0].spec.env).toEqual({ TOKEN: secret });
      const id = JSON.parse(answer).id as string;
      for (const path of [`/v1/jobs/${id}`, '/v1/jobs', `/v1/audit-events?tenant_id=${tenant.id}`, '/v1/audit-events']) {
        const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${path.includes('audit') ? server.adminKey.key : key.key}` } });
        expect(res.status, path).toBe(200);
        expect(await res.text(), path).not.toContain(secret);
      }
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      const entries = modes(dataDir);
      expect(entries.map(([p]) => p)).toEqual(expect.arrayContaining(['kiln.db', 'kiln.db-wal', 'kiln.db-shm', 'admin.key', 'secrets.key']));
      for (const [path, mode] of entries) {
        const isDir = statSync(join(dataDir, path)).isDirectory();
        expect([path, mode.toString(8)]).toEqual([path, isDir ? '700' : '600']);
        if (!isDir) expect(readFileSync(join(dataDir, path)).includes(secret), path).toBe(false);
      }
    } finally {
      await server.close();
    }
  });

  it('refuses to start on a data dir that group or others may read, with the chmod that fixes it', async () => {
    const dataDir = join(tempDir(), 'open');
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    const start = startServer(loadServerConfig({ KILN_DATA_DIR: dataDir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent' }));
    await expect(start).rejects.toThrow(`chmod 700 ${dataDir}`);
    await expect(start).rejects.toThrow(/mode 0755/);
    expect(readdirSync(dataDir)).toEqual([]); // nothing was written into it
  });

  it('tightens database files an older start left 0644', async () => {
    const dataDir = join(tempDir(), 'old');
    const first = await startServer(loadServerConfig({ KILN_DATA_DIR: dataDir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent' }));
    await first.close();
    chmodSync(join(dataDir, 'kiln.db'), 0o644);
    const again = await startServer(loadServerConfig({ KILN_DATA_DIR: dataDir, KILN_PORT: '0', KILN_LOG_LEVEL: 'silent' }));
    await again.close();
    expect(statSync(join(dataDir, 'kiln.db')).mode & 0o777).toBe(0o600);
  });
});
