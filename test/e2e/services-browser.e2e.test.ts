import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { DEFAULT_RULESET } from '@kiln/core';
import { chromium, type Browser } from 'playwright-core';
import { eventually, KilnSystem } from './support/kiln-system.js';

/** Debian's Chromium (scripts/setup.sh installs it); playwright-core downloads no browser of its own. */
const CHROMIUM = process.env.KILN_TEST_CHROMIUM ?? '/usr/bin/chromium';

const PAGE = `<!doctype html>
<title>kiln service</title>
<h1>hello from a sandbox</h1>
<p id="data">loading</p>
<script>
  // A relative request from the page: it is sent with the service's cookie, not with the token.
  fetch('data.json').then((r) => r.json()).then((d) => { document.getElementById('data').textContent = d.message; });
</script>
`;

/**
 * Issue 9's "done when": a Python HTTP server started as a service and opened in headless Chromium
 * through a scoped token. The `?kiln_token=` URL answers 303 to the clean URL with an HttpOnly cookie
 * scoped to the service; the page and what it loads work with that cookie alone, scripts cannot read
 * it, and the cookie opens no other service.
 */
describe('a service in headless Chromium', () => {
  let kiln: KilnSystem | undefined;
  let browser: Browser | undefined;
  afterEach(async () => {
    await browser?.close();
    await kiln?.close();
  }, 60_000);

  it('opens through a scoped token; the cookie carries on and opens nothing else', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (it installs chromium)`).toBe(true);
    kiln = new KilnSystem('sqlite');
    await kiln.startServer();
    await kiln.startRunner({ name: 'browser-runner', capacity: 2 });
    const { admin } = await kiln.newTenant();
    const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
    await admin.policies.publish(policy.id, { ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true } }, expected_version: policy.version });
    const start = (files: { path: string; content: string }[]) =>
      admin.services.create({ files: files.map((f) => ({ ...f, encoding: 'utf8' as const })), command: ['python3', '-m', 'http.server', '8000'], port: 8000, readiness: { path: '/' } });
    const svc = await start([{ path: 'index.html', content: PAGE }, { path: 'data.json', content: '{"message": "loaded with the cookie"}' }]);
    const other = await start([{ path: 'index.html', content: '<h1>the other service</h1>' }]);
    for (const id of [svc.id, other.id]) {
      await eventually(`service ${id} to run`, async () => (await admin.services.get(id)).status === 'running');
    }
    const token = await admin.services.createToken(svc.id, { ttl_seconds: 300 });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    const page = await browser.newPage();
    const answer = await page.goto(token.url);
    expect(answer?.status()).toBe(200);
    expect(page.url()).toBe(svc.proxy_url);
    expect(await page.textContent('h1')).toBe('hello from a sandbox');
    await page.waitForFunction(() => document.getElementById('data')?.textContent !== 'loading');
    expect(await page.textContent('#data')).toBe('loaded with the cookie');
    expect(await page.evaluate(() => document.cookie)).toBe('');
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ name: 'kiln_service_token', httpOnly: true, path: `/v1/services/${svc.id}/proxy` });

    // The same browser is refused by the other service: the cookie is not sent there, and opens nothing else.
    const refused = await page.goto(other.proxy_url);
    expect(refused?.status()).toBe(401);
    const revoked = await admin.services.revokeToken(svc.id, token.id);
    expect(revoked.revoked_at).not.toBeNull();
    expect((await page.goto(svc.proxy_url))?.status()).toBe(401);
  }, 120_000);
});
