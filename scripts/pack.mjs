#!/usr/bin/env node
// Builds the two packages kiln publishes, as npm tarballs that install and work outside the checkout:
//   kiln-sandbox-sdk  the TypeScript SDK: one ESM file with no Node-only global, its types in one .d.ts
//   kiln-sandbox-cli  the `kiln` command for a running kiln: one self-contained ESM file, no dependency
// The workspace packages (@kiln/sdk, @kiln/cli, @kiln/core) stay private: each is staged into
// build/pack/<name>/ with a package.json of its own, then `npm pack`ed there.
// Usage: npm run build && node scripts/pack.mjs [--out DIR]   (prints the tarballs' paths)
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outIndex = process.argv.indexOf('--out');
const out = resolve(outIndex > 0 ? process.argv[outIndex + 1] : join(root, 'build/pack'));
const version = JSON.parse(readFileSync(join(root, 'packages/sdk/package.json'), 'utf8')).version;
const cliVersion = /VERSION = '([^']+)'/.exec(readFileSync(join(root, 'packages/cli/src/version.ts'), 'utf8'))?.[1];
if (cliVersion !== version) throw new Error(`packages/cli/src/version.ts says ${cliVersion}, packages/sdk/package.json ${version}: make them agree`);
const zodVersion = JSON.parse(readFileSync(join(root, 'packages/core/package.json'), 'utf8')).dependencies.zod;

const common = { version, license: 'MIT', type: 'module', engines: { node: '>=20.19' } };

function stage(name) {
  const dir = join(out, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'dist'), { recursive: true });
  copyFileSync(join(root, 'LICENSE'), join(dir, 'LICENSE'));
  return dir;
}

function pack(dir) {
  const answer = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' });
  return join(out, JSON.parse(answer)[0].filename);
}

// --- the SDK -------------------------------------------------------------------------------------
const sdk = stage('sdk');
await build({
  entryPoints: [join(root, 'packages/sdk/src/index.ts')],
  outfile: join(sdk, 'dist/index.js'),
  bundle: true,
  format: 'esm',
  // 'neutral': no Node built-in may be imported; the SDK runs wherever fetch exists.
  platform: 'neutral',
  target: 'es2022',
  sourcemap: true,
  legalComments: 'none',
});
// Types in one file: @kiln/core's inlined (it is private), zod's imported (a dependency: request and
// answer types are zod's input/output types).
execFileSync(
  process.execPath,
  [join(root, 'node_modules/dts-bundle-generator/dist/bin/dts-bundle-generator.js'), '--silent', '--no-banner', '--no-check',
    '--project', join(root, 'packages/sdk/tsconfig.json'), '--external-inlines', '@kiln/core',
    '-o', join(sdk, 'dist/index.d.ts'), join(root, 'packages/sdk/src/index.ts')],
  { stdio: 'inherit' },
);
copyFileSync(join(root, 'packages/sdk/README.md'), join(sdk, 'README.md'));
writeFileSync(join(sdk, 'package.json'), `${JSON.stringify({
  name: 'kiln-sandbox-sdk',
  description: 'TypeScript SDK for kiln, self-hostable sandboxed code execution (Node 20+, browsers, edge runtimes)',
  ...common,
  main: './dist/index.js',
  types: './dist/index.d.ts',
  exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' }, './package.json': './package.json' },
  files: ['dist', 'README.md', 'LICENSE'],
  sideEffects: false,
  dependencies: { zod: zodVersion },
}, null, 2)}\n`);

// --- the CLI -------------------------------------------------------------------------------------
const cli = stage('cli');
mkdirSync(join(cli, 'bin'));
await build({
  entryPoints: [join(root, 'packages/cli/src/index.ts')],
  outfile: join(cli, 'dist/kiln.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  legalComments: 'none',
  // commander is CommonJS: give the bundle a require for its Node built-ins.
  banner: { js: "import { createRequire as __kilnRequire } from 'node:module'; const require = __kilnRequire(import.meta.url);" },
  plugins: [{
    // The local commands (up, server, runner, exec) need the whole checkout: left out, so the CLI
    // answers them with where to find them.
    name: 'leave-out-local-commands',
    setup(b) {
      b.onResolve({ filter: /^\.\/local\.js$/ }, (args) => ({ path: args.path, external: true }));
    },
  }],
});
writeFileSync(join(cli, 'bin/kiln.js'), "#!/usr/bin/env node\nimport { main } from '../dist/kiln.js';\n\nawait main(process.argv);\n", { mode: 0o755 });
copyFileSync(join(root, 'packages/cli/README.md'), join(cli, 'README.md'));
writeFileSync(join(cli, 'package.json'), `${JSON.stringify({
  name: 'kiln-sandbox-cli',
  description: 'The kiln command: run code in kiln sandboxes and manage a kiln from the terminal',
  ...common,
  bin: { kiln: './bin/kiln.js' },
  files: ['bin', 'dist', 'README.md', 'LICENSE'],
  dependencies: {},
}, null, 2)}\n`);

for (const dir of [sdk, cli]) process.stdout.write(`${pack(dir)}\n`);
