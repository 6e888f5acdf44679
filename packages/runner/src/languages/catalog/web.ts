import { BUILD_DIR, compileAndRun, compiledWith, interpreted, type LanguageDefinition } from './define.js';

/** What the default Node offers to `require`, all from Debian packages (set-up installs them). */
export const NODE_LIBRARIES = ['typescript', 'lodash', 'underscore', 'moment', 'uuid', 'semver', 'axios', 'commander', 'yargs'] as const;

/** Debian keeps its Node packages here; a Node that is not Debian's own (NodeSource) does not look there. */
const NODE_ENV = { NODE_PATH: '/usr/share/nodejs' };

/**
 * Debian has no @types/node: TypeScript programs see Node's globals as `any` through this declaration
 * (written at compile time), so `process` and `require` type-check and the program's own types are
 * still checked. No DOM library either: checking lib.dom.d.ts would double every compile's time.
 */
const NODE_GLOBALS = [
  'declare var process: any;',
  'declare function require(id: string): any;',
  'declare var module: any;',
  'declare var exports: any;',
  'declare var Buffer: any;',
  'declare var __dirname: string;',
  'declare var __filename: string;',
  'declare var console: any;',
];

const TS_OUT = `${BUILD_DIR}/ts`;

/** JavaScript and the languages that compile to it. */
export const WEB: readonly LanguageDefinition[] = [
  interpreted('node', 'main.js', ['.js', '.mjs', '.cjs'], ['node'], ['node', '-p', 'process.versions.node'], {
    aliases: ['javascript', 'js', 'nodejs', 'node-js'],
    env: NODE_ENV,
    libraries: NODE_LIBRARIES,
  }),
  compiledWith(
    'typescript',
    'main.ts',
    ['.ts'],
    () =>
      compileAndRun(
        `printf '%s\\n' ${NODE_GLOBALS.map((l) => `'${l}'`).join(' ')} > ${BUILD_DIR}/node-globals.d.ts && ` +
          `tsc --pretty false --noEmitOnError --strict --target es2020 --module commonjs --lib es2020 --skipLibCheck ` +
          `--rootDir /workspace --outDir ${TS_OUT} "$0" ${BUILD_DIR}/node-globals.d.ts`,
        `exec node "${TS_OUT}/\${0%.ts}.js" "$@"`,
      ),
    ['tsc', '--version'],
    { aliases: ['ts', 'tsc'], env: NODE_ENV },
  ),
  interpreted('coffeescript', 'main.coffee', ['.coffee'], ['coffee'], ['coffee', '--version'], { aliases: ['coffee'], env: NODE_ENV }),
];
