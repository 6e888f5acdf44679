import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run the TypeScript sources of every workspace package, not stale builds.
    alias: {
      // The language catalog alone (no sandbox code), as the packed CLI bundles it; before '@kiln/runner'.
      '@kiln/runner/catalog': fileURLToPath(new URL('./packages/runner/src/languages/catalog/index.ts', import.meta.url)),
      '@kiln/core': pkg('core'),
      '@kiln/server': pkg('server'),
      '@kiln/runner': pkg('runner'),
      '@kiln/sdk': pkg('sdk'),
      '@kiln/mcp': pkg('mcp'),
    },
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts', 'packages/*/native/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    reporters: ['default', './test/support/summary-reporter.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
