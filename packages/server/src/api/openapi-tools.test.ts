import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import openapiTS, { astToString } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestApp, type TestApp } from './testing.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const REDOCLY = require.resolve('@redocly/cli/bin/cli.js');
const TSC = require.resolve('typescript/bin/tsc');

/** A small program against the generated types: what a user of a generated client writes. */
const PROGRAM = `
import type { paths, components } from './kiln-api.js';
type CreateJob = paths['/v1/jobs']['post']['requestBody']['content']['application/json'];
type Job = components['schemas']['Job'];
type Problem = components['schemas']['Problem'];
const request: CreateJob = { language: 'python', code: 'print(1)', env: { MY_VAR: 'x' }, limits: { wall_time_ms: 5000 } };
const created: paths['/v1/jobs']['post']['responses']['201']['content']['application/json'] = {} as Job;
const status: Job['status'] = created.status;
const problem: paths['/v1/jobs']['post']['responses']['400']['content']['application/problem+json'] = {} as Problem;
const code: Problem['code'] = problem.code;
const keys: paths['/v1/keys']['get']['responses']['200']['content']['application/json']['items'] = [];
const prefix: string | undefined = keys[0]?.prefix;
const page: paths['/v1/jobs']['get']['parameters']['query'] = { limit: '10', cursor: 'abc' };
export const used = [request, status, code, prefix, page];
`;

describe('the OpenAPI document, as tools see it', () => {
  let t: TestApp;
  let dir: string;
  let document: Record<string, any>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-openapi-'));
    t = await openTestApp('sqlite', { jobs: { artifactsDir: join(dir, 'artifacts') } });
    document = (await t.call('GET', '/openapi.json')).json();
    writeFileSync(join(dir, 'openapi.json'), JSON.stringify(document));
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lints with @redocly/cli without errors', async () => {
    writeFileSync(join(dir, 'redocly.yaml'), 'extends:\n  - recommended\nrules:\n  security-defined: off\n');
    const result = await run(process.execPath, [REDOCLY, 'lint', 'openapi.json', '--format', 'json'], { cwd: dir, maxBuffer: 32 * 1024 * 1024 }).catch(
      (err: { stdout: string; stderr: string }) => err,
    );
    const report = JSON.parse(result.stdout);
    const errors = report.problems.filter((p: { severity: string }) => p.severity === 'error');
    expect(errors.map((e: { message: string; location: { pointer: string }[] }) => `${e.location[0]?.pointer}: ${e.message}`)).toEqual([]);
  }, 120_000);

  it('generates a client with openapi-typescript that type-checks against a small program', async () => {
    const ast = await openapiTS(JSON.parse(JSON.stringify(document)));
    writeFileSync(join(dir, 'kiln-api.ts'), astToString(ast));
    writeFileSync(join(dir, 'program.ts'), PROGRAM);
    const tsconfig = { compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', skipLibCheck: true }, files: ['program.ts'] };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    const result = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir }).catch((err: { stdout: string }) => err);
    expect(result.stdout).toBe('');
  }, 120_000);

  it('names operations, schemas and error answers, and states the rules the server enforces', () => {
    const ops = Object.values(document.paths).flatMap((p: any) => Object.values(p)).map((o: any) => o.operationId);
    expect(ops).toEqual(expect.arrayContaining(['createJob', 'cancelJob', 'getJob', 'listJobs', 'listKeys', 'listAgentKeys', 'streamJobEvents', 'downloadArtifact']));
    expect(new Set(ops).size).toBe(ops.length);
    expect(Object.keys(document.components.schemas)).toEqual(expect.arrayContaining(['Job', 'Artifact', 'Policy', 'Problem', 'ApiKey', 'CreateJobRequest']));
    expect(document.servers).toEqual([expect.objectContaining({ url: '/' })]);
    const create = document.paths['/v1/jobs'].post;
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '202', '400', '401', '403', '413', '415', '422', '429']));
    expect(create.responses['401'].headers['WWW-Authenticate']).toBeDefined();
    expect(create.responses['429'].headers['Retry-After']).toBeDefined();
    const job = document.components.schemas.CreateJobRequest;
    expect(job.oneOf).toHaveLength(2);
    expect(job.properties.env.maxProperties).toBe(128);
    expect(job.properties.env.propertyNames.pattern).toBe('^[A-Za-z_][A-Za-z0-9_]{0,127}$');
    expect(job.properties.entrypoint.pattern).toBeDefined();
    expect(document.paths['/v1/jobs/{id}/events'].get.responses['200'].content['text/event-stream']).toBeDefined();
    const download = document.paths['/v1/artifacts/{id}/content'].get.responses['200'];
    expect(download.content['application/octet-stream']).toBeDefined();
    expect(download.headers['X-Kiln-Checksum']).toBeDefined();
    expect(document.paths['/v1/runner/leases/{id}/blobs'].put.requestBody.content['application/octet-stream']).toBeDefined();
    const cursor = document.paths['/v1/jobs'].get.parameters.find((p: any) => p.name === 'cursor');
    expect(cursor.description).toMatch(/opaque/);
    const ownerId = document.paths['/v1/artifacts'].get.parameters.find((p: any) => p.name === 'owner_id');
    expect(ownerId.description).toMatch(/owner_type/);
  });
});
