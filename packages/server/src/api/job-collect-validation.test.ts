import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_KINDS } from '../store/testing.js';
import { openTestApp, registerIdleRunner, seedTenant, type TestApp } from './testing.js';

/** `collect` globs are tenant input matched against sandbox-made names on a runner: bounded at the door. */
describe.each(DB_KINDS)('POST /v1/jobs refuses unbounded collect globs on %s', (kind) => {
  let t: TestApp;
  let dir: string;
  let agentKey: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-collect-'));
    t = await openTestApp(kind, { jobs: { artifactsDir: dir } });
    await registerIdleRunner(t);
    ({ agentKey } = await seedTenant(t));
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const submit = (collect: unknown) => t.call('POST', '/v1/jobs', agentKey, { language: 'python', code: 'print(1)', collect });

  it.each([
    ['more than 16 wildcards in one glob', ['*a'.repeat(17)], 'collect.0', /16 wildcards/],
    ['a glob longer than 255 characters', ['out/', `out/${'x'.repeat(252)}`], 'collect.1', /at most 255 characters/],
    ['a control character', ['out/\n*'], 'collect.0', /control characters/],
    ['more than 32 globs', Array.from({ length: 33 }, (_, i) => `out/${i}`), 'collect', /at most 32 items/],
    ['more than 1024 characters together', Array.from({ length: 8 }, () => `out/${'x'.repeat(200)}`), 'collect', /1024/],
    ['a path out of the workspace', ['../etc/*'], 'collect.0', /relative/],
  ])('%s: VALIDATION_FAILED naming the field, and no job', async (_name, collect, field, detail) => {
    const res = await submit(collect);
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.code).toBe('VALIDATION_FAILED');
    expect(body.field).toBe(`body.${field}`);
    expect(body.detail).toMatch(detail);
    const jobs = await t.call('GET', '/v1/jobs', agentKey);
    expect(jobs.json().items).toEqual([]);
  });

  it('accepts the globs people write, and 16 wildcards (the pattern that froze a runner has 12)', async () => {
    const res = await submit(['out/**', '**/*.png', 'data/?.csv', '*a*a*a*a*a*a*a*a*a*a*a*a*b']);
    expect(res.statusCode).toBe(201);
    expect((await submit(['*a'.repeat(16)])).statusCode).toBe(201);
  });
});
