import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase } from '../../../test/support/databases.js';
import { loadServerConfig, redactConfig, resolveAdminKey } from './config.js';
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

  it('reads KILN_* variables, and an override (a flag) wins over its variable', () => {
    const env = { KILN_PORT: '9000', KILN_HOST: '0.0.0.0', KILN_BODY_LIMIT_BYTES: '2048', KILN_DATA_DIR: '/srv/kiln' };
    expect(loadServerConfig(env)).toMatchObject({ port: 9000, host: '0.0.0.0', bodyLimitBytes: 2048, dataDir: '/srv/kiln' });
    expect(loadServerConfig(env, { port: 7000, dataDir: '/tmp/x' })).toMatchObject({ port: 7000, dataDir: '/tmp/x' });
  });

  it('reads the storage quota and retention, 0 keeping forever', () => {
    expect(loadServerConfig({})).toMatchObject({
      tenantArtifactStorageBytes: 10 * 1024 ** 3,
      artifactRetentionSeconds: 7 * 86_400,
      jobRetentionSeconds: 30 * 86_400,
    });
    const env = { KILN_TENANT_ARTIFACT_STORAGE_BYTES: '1048576', KILN_ARTIFACT_RETENTION_SECONDS: '0', KILN_JOB_RETENTION_SECONDS: '3600' };
    expect(loadServerConfig(env)).toMatchObject({ tenantArtifactStorageBytes: 1048576, artifactRetentionSeconds: 0, jobRetentionSeconds: 3600 });
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
      expect(verify).toEqual({ ok: true, count: 1 });
      await again.close();
    } finally {
      await database?.drop();
    }
  });
});
