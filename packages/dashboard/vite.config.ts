import { defineConfig } from 'vite';

// The control plane serves dist/ at /ui/. JSX compiles to Preact's runtime with Vite's own esbuild (no
// Babel preset needed); no inline script is emitted, so the page runs under a CSP without 'unsafe-inline'.
export default defineConfig({
  base: '/ui/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024, modulePreload: { polyfill: false } },
});
