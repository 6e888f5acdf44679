import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { KilnError } from '@kiln/core';
import type { FastifyInstance } from 'fastify';

/** packages/dashboard/dist, from packages/server/{src,dist}/api/ alike. */
const DEFAULT_DIR = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

/**
 * The dashboard's page policy: scripts and styles only from our own files (Vite emits no inline script),
 * nothing framed, no plugins, API calls and the terminal's WebSocket only to this origin. Styles allow
 * inline attributes because xterm.js positions its rows with style attributes; scripts never do.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

/**
 * Serves the dashboard's built files at /ui/ and nothing else: the root is the Vite output folder (no
 * dotfiles, no listing, no path outside it). Pages route by the URL's hash, so there is no fallback that
 * answers index.html for unknown paths: those are 404s.
 */
export async function serveDashboard(app: FastifyInstance, dir: string = DEFAULT_DIR): Promise<void> {
  if (!existsSync(join(dir, 'index.html'))) {
    const notBuilt = async () => {
      throw new KilnError('NOT_FOUND', 'the dashboard is not built: run `npm run build` in the checkout, then restart the server');
    };
    app.get('/ui', notBuilt);
    app.get('/ui/*', notBuilt);
    return;
  }
  const pageHeaders = {
    'content-security-policy': DASHBOARD_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  // The page itself at /ui and /ui/ (the router ignores trailing slashes), always revalidated; read per
  // request (half a kilobyte) so a rebuild under a running server serves the new asset names.
  app.get('/ui', async (_request, reply) => {
    const page = await readFile(join(dir, 'index.html'));
    return reply.headers({ ...pageHeaders, 'cache-control': 'no-cache' }).type('text/html; charset=utf-8').send(page);
  });
  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/ui/',
    index: false,
    list: false,
    dotfiles: 'deny',
    cacheControl: false, // set below, per file
    decorateReply: false,
    setHeaders(res, path) {
      for (const [k, v] of Object.entries(pageHeaders)) res.setHeader(k, v);
      // Vite names assets by their hash: they never change.
      res.setHeader('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
}
