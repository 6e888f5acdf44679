import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runInNewContext } from 'node:vm';
import { build, transform } from 'esbuild';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, KilnSystem } from './support/kiln-system.js';

/**
 * The published packages, as a user gets them: `scripts/pack.mjs` packs kiln-sandbox-sdk and
 * kiln-sandbox-cli, they are npm-installed from the tarballs into an empty folder outside the checkout,
 * and run jobs against a real control plane and runner. The SDK is also loaded in a context with only
 * web globals (no process, Buffer, require), as in a browser or an edge worker.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'kiln-packages-'));
const app = join(work, 'app');
const kilnBin = join(app, 'node_modules/.bin/kiln');

/** The ```ts blocks of the JSDoc comments in a source file, as written (the ` * ` margin removed). */
export function jsdocExamples(source: string): string[] {
  const examples: string[] = [];
  const block = /^\s*\* ```ts\n([\s\S]*?)^\s*\* ```/gm;
  for (const m of source.matchAll(block)) examples.push(m[1]!.split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n'));
  return examples;
}

/** The values `// → value` comments promise a `console.log` prints, in order. */
const promised = (code: string) => [...code.matchAll(/console\.log\([^\n]*\/\/ → (.+)$/gm)].map((m) => m[1]!.trim());

describe('the packed SDK and CLI, installed outside the checkout', () => {
  const kiln = new KilnSystem('sqlite');
  let env: Record<string, string>;
  let agentKey: string;
  let tenantKey: string;

  const cli = (args: string[], extra: Record<string, string> = {}) =>
    spawnSync(kilnBin, args, { cwd: app, env: { ...env, ...extra }, encoding: 'utf8', timeout: 60_000 });

  beforeAll(async () => {
    const tarballs = execFileSync(process.execPath, [join(ROOT, 'scripts/pack.mjs'), '--out', join(work, 'pack')], { encoding: 'utf8' })
      .trim()
      .split('\n');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // From the tarballs; zod (the SDK's one dependency) from the npm cache when it is there.
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], { cwd: app, stdio: 'pipe', timeout: 240_000 });
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 2 });
    const tenant = await kiln.operator.tenants.create({ name: 'packed' });
    tenantKey = (await kiln.operator.tenants.createKey(tenant.id)).key;
    const admin = kiln.client(tenantKey);
    const agent = await admin.agents.create({ name: 'packed-agent' });
    agentKey = (await admin.agents.createKey(agent.id)).key;
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, KILN_URL: kiln.url, KILN_API_KEY: agentKey };
  }, 300_000);

  afterAll(async () => {
    await kiln.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('the tarballs hold a licence, a README, the bundles and no private dependency', () => {
    for (const name of ['kiln-sandbox-sdk', 'kiln-sandbox-cli']) {
      const pkg = JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8'));
      expect(pkg.license).toBe('MIT');
      expect(Object.keys(pkg.dependencies ?? {}).filter((d) => d.startsWith('@kiln/'))).toEqual([]);
      expect(readFileSync(join(app, 'node_modules', name, 'LICENSE'), 'utf8')).toMatch(/MIT License/);
      expect(readFileSync(join(app, 'node_modules', name, 'README.md'), 'utf8')).toMatch(/npm install/);
    }
    const types = readFileSync(join(app, 'node_modules/kiln-sandbox-sdk/dist/index.d.ts'), 'utf8');
    expect(types).not.toMatch(/@kiln\//);
    expect(types).toMatch(/export declare class KilnClient/);
  });

  it('the CLI runs a job of several files with args, env and limits, exits with its code, and downloads its artifacts', () => {
    writeFileSync(join(app, 'main.py'), 'import os, sys, lib\nlib.save(int(sys.argv[1]))\nprint(os.environ["GREETING"], lib.square(int(sys.argv[1])))\nsys.exit(3)\n');
    writeFileSync(join(app, 'lib.py'), 'import os\ndef square(n):\n    return n * n\ndef save(n):\n    os.makedirs("out", exist_ok=True)\n    open("out/square.txt", "w").write(str(square(n)))\n');
    const r = cli(['run', 'main.py', 'lib.py', '--env', 'GREETING=hi', '--memory-bytes', '134217728', '--download', 'got', '--', '7']);
    expect(r.stderr).not.toMatch(/cannot/);
    expect(r.stdout).toBe('hi 49\n');
    expect(r.status).toBe(3);
    expect(readFileSync(join(app, 'got/out/square.txt'), 'utf8')).toBe('49');

    const json = cli(['run', 'main.py', 'lib.py', '--json', '--env', 'GREETING=yo', '--', '2']);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 'failed', verdict: 'runtime_error', stdout: 'yo 4\n', exit_status: { code: 3 } });
    expect(cli(['--version']).stdout.trim()).toBe('0.1.0');
    const list = JSON.parse(cli(['jobs', 'list', '--json']).stdout);
    expect(list.items.length).toBeGreaterThanOrEqual(2);
  });

  it('the installed CLI serves kiln over MCP on stdio (`kiln mcp`)', async () => {
    const client = new Client({ name: 'packed', version: '1' });
    await client.connect(new StdioClientTransport({ command: kilnBin, args: ['mcp'], cwd: app, env, stderr: 'ignore' }));
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('run_code');
      const result = await client.callTool({ name: 'run_code', arguments: { language: 'python', code: 'print(6 * 7)' } });
      expect(result.structuredContent).toMatchObject({ verdict: 'ok', stdout: '42\n' });
    } finally {
      await client.close();
    }
  });

  it('the CLI says what failed and what to do, with its own exit codes', async () => {
    const port = await freePort();
    const down = cli(['jobs', 'list'], { KILN_URL: `http://127.0.0.1:${port}` });
    expect(down.stderr).toBe(`kiln: cannot reach http://127.0.0.1:${port} (connection refused): is kiln up running? set KILN_URL or pass --url\n`);
    expect(down.status).toBe(123);
    expect(cli(['jobs', 'list'], { KILN_API_KEY: 'kiln_nope' }).status).toBe(122);
    const up = cli(['up']);
    expect(up.stderr).toMatch(/kiln up runs kiln itself and comes with a checkout/);
    expect(up.status).toBe(121);
  });

  it('Ctrl-C during kiln run cancels the job', async () => {
    writeFileSync(join(app, 'slow.py'), 'import time\nprint("started", flush=True)\ntime.sleep(60)\n');
    const child = spawn(kilnBin, ['run', 'slow.py'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('started')) child.kill('SIGINT');
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(err).toMatch(/canceling job job_/);
    const id = /canceling job (job_\w+)/.exec(err)![1]!;
    expect((await kiln.client(agentKey).jobs.get(id)).status).toBe('canceled');
    expect(code).not.toBe(0);
  }, 60_000);

  it('the SDK runs a job from the installed package, and its JSDoc examples run as written', async () => {
    writeFileSync(join(app, 'use.mjs'), [
      "import { KilnClient, ConnectionError } from 'kiln-sandbox-sdk';",
      'const kiln = new KilnClient();',
      "const job = await kiln.jobs.run({ language: 'python', files: [{ path: 'a.py', content: 'print(6 * 7)' }] });",
      'console.log(job.verdict, job.stdout.trim());',
    ].join('\n'));
    const used = spawnSync(process.execPath, ['use.mjs'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    expect(used.stderr).toBe('');
    expect(used.stdout).toBe('ok 42\n');

    const examples = jsdocExamples(readFileSync(join(ROOT, 'packages/sdk/src/client.ts'), 'utf8'));
    expect(examples.length).toBeGreaterThanOrEqual(3);
    for (const [i, example] of examples.entries()) {
      const { code } = await transform(example, { loader: 'ts', format: 'esm' });
      writeFileSync(join(app, `example-${i}.mjs`), code);
      const run = spawnSync(process.execPath, [`example-${i}.mjs`], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
      expect(run.status, `${example}\n${run.stderr}`).toBe(0);
      const printed = run.stdout.split('\n');
      for (const value of promised(example)) expect(printed, example).toContain(value);
    }
  }, 120_000);

  it('the SDK runs with web globals only: no process, Buffer or require', async () => {
    const bundled = await build({
      entryPoints: [join(app, 'node_modules/kiln-sandbox-sdk/dist/index.js')],
      bundle: true,
      write: false,
      format: 'iife',
      globalName: 'kilnSdk',
      platform: 'browser',
    });
    const printed: string[] = [];
    const web = { fetch, URL, URLSearchParams, AbortController, AbortSignal, TextDecoder, TextEncoder, ReadableStream, Response, Headers, setTimeout, clearTimeout, console };
    const context: Record<string, unknown> = { ...web };
    runInNewContext(bundled.outputFiles[0]!.text, context);
    expect(runInNewContext('typeof process + typeof Buffer + typeof require', context)).toBe('undefinedundefinedundefined');
    const sdk = context.kilnSdk as typeof import('@kiln/sdk');
    const client = new sdk.KilnClient({ url: kiln.url, apiKey: agentKey });
    const job = await client.jobs.run({ language: 'python', code: 'print("from the edge")' }, { onStdout: (d) => printed.push(d) });
    expect(job.verdict).toBe('ok');
    expect(printed.join('')).toBe('from the edge\n');
    const { bytes } = await client.artifacts.download(job.output_refs!.stdout!);
    expect(new TextDecoder().decode(bytes)).toBe('from the edge\n');
    const port = await freePort();
    const refused = await new sdk.KilnClient({ url: `http://127.0.0.1:${port}`, apiKey: agentKey }).jobs.list().catch((e: Error) => e);
    expect((refused as Error).name).toBe('ConnectionError');
    expect((refused as Error).message).toBe(`cannot reach http://127.0.0.1:${port} (connection refused)`);
  }, 60_000);
});
