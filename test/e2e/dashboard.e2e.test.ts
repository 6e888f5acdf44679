import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { DEFAULT_RULESET } from '@kiln/core';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem } from './support/kiln-system.js';

/**
 * The dashboard in a real browser (issue 13, points 2–4): Debian's Chromium driven by playwright-core
 * against a real server and runner. Screenshots of a failing step go to test/e2e/screenshots/ (ignored
 * by git); the jobs page's screenshot is saved there on every run (the README's docs/dashboard-jobs.png).
 */

const CHROMIUM = process.env.KILN_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = resolve(import.meta.dirname, 'screenshots');

/** A program whose output is hostile: markup, an inline handler, terminal escapes; and a hostile file name. */
const HOSTILE_PROGRAM = [
  'import os, time',
  'print("first line", flush=True)',
  'time.sleep(2)',
  `print("<script>window.__pwned='script'</script><img src=x onerror=\\"window.__pwned='img'\\">\\x1b[31mRED\\x1b[0m\\x1b]0;evil title\\x07 done", flush=True)`,
  'os.makedirs("out", exist_ok=True)',
  'open("out/result.txt", "w").write("artifact-body-42")',
  `open("out/<img src=x onerror=window.__pwned=1>.txt", "w").write("x")`,
].join('\n');

/**
 * A service whose log is hostile (markup, an inline handler, terminal escapes) before it serves its
 * folder with Python's HTTP server; `/bin/sh -c` runs the string.
 */
const HOSTILE_SERVICE =
  `printf '%s\\n' "<script>window.__pwned='svc'</script><img src=x onerror=\\"window.__pwned='svc-img'\\">"; ` +
  `printf '\\033[31mRED\\033[0m\\033]0;evil title\\007 ready\\n'; exec python3 -m http.server 8000`;

describe('the dashboard at /ui in Chromium', () => {
  const kiln = new KilnSystem('sqlite');
  let browser: Browser;
  let page: Page;
  let tenantKey: string;
  let agentKey: string;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];
  let dialogs = 0;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: bash scripts/setup.sh installs Debian's chromium`);
    await kiln.startServer();
    await kiln.startRunner({ name: 'runner-1', zone: 'eu-1' });
    const tenant = await kiln.operator.tenants.create({ name: 'acme' });
    tenantKey = (await kiln.operator.tenants.createKey(tenant.id)).key;
    const admin = kiln.client(tenantKey);
    const agent = await admin.agents.create({ name: 'bot' });
    agentKey = (await admin.agents.createKey(agent.id)).key;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => {
      dialogs++;
      void d.dismiss();
    });
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await kiln.close();
  });

  /** Runs a step; on failure saves a screenshot named after it, then fails with the server's logs. */
  async function step(name: string, fn: () => Promise<void>) {
    try {
      await fn();
    } catch (err) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
      throw new Error(`${name}: ${String(err)}\n--- kiln logs\n${kiln.logs().slice(-4000)}`);
    }
  }

  async function signIn(key: string) {
    await page.goto(`${kiln.url}/ui/`);
    await page.evaluate(() => sessionStorage.clear());
    await page.reload();
    await page.fill('input[name=key]', key);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=whoami]');
    // The key is never in the URL.
    expect(page.url()).not.toContain(key);
  }

  it('signs in as the operator: tenants, quotas, runners with zone, capacity, load and heartbeat age', async () => {
    await step('operator-sign-in', async () => {
      await signIn(kiln.adminKey);
      expect(await page.textContent('[data-testid=whoami]')).toContain('operator');
      // The operator's pages, not the tenant's.
      expect(await page.locator('nav a', { hasText: 'Runners' }).count()).toBe(1);
      expect(await page.locator('nav a', { hasText: 'Sessions' }).count()).toBe(0);
      await page.click('a:has-text("acme")');
      await page.waitForSelector('[data-testid=quota]');
      expect(await page.textContent('[data-testid=quota]')).toContain('max_running_jobs');
      // The operator replaces the overrides; a value out of range is refused with its field, changing nothing.
      const overrides = page.locator('form[aria-label="quota overrides"]');
      await overrides.locator('textarea').fill('{"limits": {"pids": 0}}');
      await overrides.locator('button').click();
      await overrides.locator('[role=alert][data-code=VALIDATION_FAILED]').waitFor();
      expect(await overrides.locator('[role=alert]').textContent()).toContain('body.limits.pids');
      await overrides.locator('textarea').fill('{"concurrency": {"max_running_jobs": 40}}');
      await overrides.locator('button').click();
      await overrides.locator('text=saved').waitFor();
      const tenants = await kiln.operator.tenants.list();
      const quota = await kiln.operator.tenants.getQuota(tenants.items.find((x) => x.name === 'acme')!.id);
      expect(quota.concurrency.max_running_jobs).toBe(40);
      expect(quota.limits.pids).not.toBe(0);
      await page.click('nav a:has-text("Runners")');
      const row = page.locator('tr[data-runner="runner-1"]');
      await row.waitFor();
      const text = await row.textContent();
      expect(text).toContain('eu-1');
      expect(text).toContain('healthy');
      expect(text).toMatch(/\/ 2/); // load against capacity 2
      expect(text).toMatch(/\d+ s/); // heartbeat age
    });
  });

  it('signs in as a tenant, runs a job from the page and watches its output arrive; hostile output stays text', async () => {
    await step('tenant-run-job', async () => {
      await signIn(tenantKey);
      expect(await page.textContent('[data-testid=whoami]')).toContain('tenant admin');
      await page.click('summary:has-text("Run a job")');
      await page.selectOption('select[name=language]', 'python');
      await page.fill('textarea[name=code]', HOSTILE_PROGRAM);
      await page.click('form[aria-label="run a job"] button[type=submit]');
      await page.waitForURL(/#\/jobs\/job_/);
      // Live: the first line is on the page while the job still runs (the stream has not ended).
      await page.waitForFunction(() => document.querySelector('[data-testid=live-output]')?.textContent?.includes('first line'));
      expect(await page.textContent('[data-testid=stream-state]')).toContain('live');
      await page.waitForFunction(() => document.querySelector('[data-testid=stream-state]')?.textContent?.includes('ended'), undefined, { timeout: 30_000 });
      const out = (await page.textContent('[data-testid=live-output]'))!;
      expect(out).toContain("<script>window.__pwned='script'</script>");
      expect(out).toContain('<img src=x onerror=');
      expect(out).toContain('RED done');
      expect(out).not.toMatch(/\x1b|\x07/);
      // Nothing ran and nothing became markup: no script, no image, no handler, no dialog, no title change.
      expect(await page.locator('[data-testid=live-output] script, [data-testid=live-output] img').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(await page.title()).toBe('kiln');
      // The job's facts and its one sandbox instance.
      await page.waitForFunction(() => document.querySelector('[data-testid=sandboxes]')?.textContent?.includes('sbx_'));
      expect(await page.textContent('main')).toContain('succeeded');
      expect(await page.textContent('main')).toContain('memory peak');
    });
  });

  it('downloads an artifact; a hostile file name is text', async () => {
    await step('download', async () => {
      const artifacts = page.locator('[data-testid=artifacts]');
      await page.waitForFunction(() => document.querySelector('[data-testid=artifacts]')?.textContent?.includes('out/result.txt'));
      expect(await artifacts.textContent()).toContain('out/<img src=x onerror=window.__pwned=1>.txt');
      expect(await artifacts.locator('img').count()).toBe(0);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('button[aria-label="download out/result.txt"]')]);
      expect(download.suggestedFilename()).toBe('result.txt');
      expect(readFileSync((await download.path())!, 'utf8')).toBe('artifact-body-42');
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, 'dashboard-job.png'), fullPage: true });
    });
  });

  it('a session: its terminal over the PTY WebSocket (xterm.js), the key as a subprotocol, never in the URL', async () => {
    await step('terminal', async () => {
      const created = await fetch(`${kiln.url}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tenantKey}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(created.status).toBe(201);
      const sessionId = ((await created.json()) as { id: string }).id;
      // The server picks kiln.pty and never echoes the key's subprotocol; a wrong key is refused on the upgrade.
      const wsUrl = `${kiln.url.replace('http', 'ws')}/v1/sessions/${sessionId}/pty`;
      const refused = await new Promise<number>((done) => {
        const ws = new WebSocket(wsUrl, ['kiln.pty', 'kiln.key.kiln_tenant_key_nope_nope']);
        ws.on('unexpected-response', (_req, res) => done(res.statusCode ?? 0));
        ws.on('open', () => done(101));
        ws.on('error', () => {});
      });
      expect(refused).toBe(401);
      const chosen = await new Promise<string>((done, fail) => {
        const ws = new WebSocket(wsUrl, ['kiln.pty', `kiln.key.${tenantKey}`]);
        ws.on('open', () => {
          done(ws.protocol);
          ws.close();
        });
        ws.on('error', fail);
      });
      expect(chosen).toBe('kiln.pty');

      await page.evaluate((id) => (location.hash = `#/sessions/${id}`), sessionId);
      await page.click('button:has-text("Open terminal")');
      await page.waitForFunction(() => document.querySelector('[data-testid=terminal-state]')?.textContent?.includes('connected'));
      await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent?.includes('$'));
      // Typed key by key: the characters reach the shell in order.
      await page.keyboard.type("echo hi-$((6*7)); printf '\\033[31m<b>bold</b>\\033[0m\\n'\n");
      await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent?.includes('hi-42'));
      await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent?.includes('<b>bold</b>'));
      expect(await page.locator('.xterm-rows b').count()).toBe(0);
      await page.click('button:has-text("Close terminal")');
    });
  });

  it('policies side by side with a diff, a workflow as a timeline, the audit with its verify answer', async () => {
    await step('policies-workflows-audit', async () => {
      const admin = kiln.client(tenantKey);
      const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
      const ruleset = { ...policy.ruleset, limits: { ...policy.ruleset.limits, pids: 16 } };
      await admin.policies.publish(policy.id, { ruleset, expected_version: policy.version });
      await page.evaluate((id) => (location.hash = `#/policies/${id}`), policy.id);
      await page.waitForSelector('[data-testid=policy-diff]');
      const diff = (await page.textContent('[data-testid=policy-diff]'))!;
      expect(diff).toContain('- ');
      expect(diff).toMatch(/\+ +"pids": 16/);
      expect(await page.textContent('[data-testid=policy-left]')).not.toBe(await page.textContent('[data-testid=policy-right]'));

      const wf = await admin.workflows.create({
        name: 'two-steps',
        steps: [
          { name: 'make', language: 'python', code: 'import os\nos.makedirs("out", exist_ok=True)\nopen("out/n.txt", "w").write("7")' },
          { name: 'use', language: 'python', code: 'print(open("n.txt").read())', inputs: [{ step: 'make', artifact: 'out/n.txt', path: 'n.txt' }] },
        ],
      } as never);
      await eventually('the workflow to succeed', async () => (await admin.workflows.get(wf.id)).status === 'succeeded', 30_000);
      await page.evaluate((id) => (location.hash = `#/workflows/${id}`), wf.id);
      await page.waitForSelector('[data-testid=timeline] .tl-bar');
      expect(await page.locator('[data-testid=timeline] .tl-row').count()).toBe(2);
      expect(await page.locator('[data-testid=timeline] .tl-bar.s-succeeded').count()).toBe(2);

      await page.click('nav a:has-text("Audit")');
      await page.waitForFunction(() => document.querySelector('[data-testid=audit-table]')?.textContent?.includes('job.create'));
      await page.click('[data-testid=verify]');
      await page.waitForSelector('[data-testid=verify-answer]');
      expect(await page.textContent('[data-testid=verify-answer]')).toMatch(/^Chain intact: \d+ events checked/);

      // The jobs page with its charts, for the README (docs/dashboard-jobs.png is a copy of it).
      await page.click('nav a:has-text("Jobs")');
      await page.waitForSelector('[data-testid=chart-rate]');
      await page.screenshot({ path: join(SHOTS, 'dashboard-jobs.png') });
    });
  });

  it('a service: running on the page, logs live, opened in a new tab with a scoped token, stopped; hostile log lines stay text', async () => {
    await step('services', async () => {
      const admin = kiln.client(tenantKey);
      const policy = (await admin.policies.list()).items.find((p) => p.name === 'default')!;
      await admin.policies.publish(policy.id, {
        ruleset: { ...DEFAULT_RULESET, services: { ...DEFAULT_RULESET.services, allowed: true } },
        expected_version: policy.version,
      });
      const svc = await admin.services.create({
        files: [{ path: 'index.html', content: '<h1>hello from a sandbox</h1>\n', encoding: 'utf8' }],
        command: HOSTILE_SERVICE,
        port: 8000,
        readiness: { path: '/', timeout_ms: 20_000 },
      });
      await page.click('nav a:has-text("Services")');
      const row = page.locator(`tr[data-service="${svc.id}"]`);
      await row.waitFor();
      await row.locator('a').click();
      await page.waitForURL(/#\/services\/svc_/);
      // The page reads the service again while it lives: `starting` becomes `running` without a reload.
      await page.waitForFunction(() => document.querySelector('[data-testid=service-status]')?.textContent === 'running', undefined, { timeout: 30_000 });
      expect(await page.textContent('[data-testid=proxy-url]')).toBe(svc.proxy_url);
      const placed = await admin.services.get(svc.id);
      expect(await page.textContent('main')).toContain(placed.runner_id!);
      expect(await page.textContent('main')).toContain(placed.sandbox_id!);
      await page.waitForFunction(() => document.querySelector('[data-testid=live-output]')?.textContent?.includes('RED ready'));
      const log = (await page.textContent('[data-testid=live-output]'))!;
      expect(log).toContain(`<script>window.__pwned='svc'</script><img src=x onerror="window.__pwned='svc-img'">`);
      expect(log).not.toMatch(/\x1b|\x07/);
      expect(await page.locator('[data-testid=live-output] script, [data-testid=live-output] img').count()).toBe(0);

      // Open: a token for this service alone in a new tab's URL (traded there for a cookie), never the key.
      const [tab] = await Promise.all([page.context().waitForEvent('page'), page.click('[data-testid=open-service]')]);
      await tab.waitForURL((u) => u.href === svc.proxy_url);
      expect(await tab.textContent('h1')).toBe('hello from a sandbox');
      expect(await tab.evaluate(() => window.opener)).toBeNull();
      expect(tab.url()).not.toContain(tenantKey);
      // The tab goes on with the cookie alone; the service's request log line arrives on the page, live.
      expect((await tab.goto(`${svc.proxy_url}index.html?from=the-tab`))?.status()).toBe(200);
      await tab.close();
      await page.waitForFunction(() => document.querySelector('[data-testid=live-output]')?.textContent?.includes('"GET /index.html?from=the-tab HTTP/1.1" 200'));
      expect(await page.textContent('[data-testid=stream-state]')).toContain('live');
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, 'dashboard-service.png'), fullPage: true });

      await page.click('[data-testid=stop-service]');
      await page.waitForFunction(() => document.querySelector('[data-testid=service-status]')?.textContent === 'stopped');
      await page.waitForFunction(() => document.querySelector('[data-testid=stream-state]')?.textContent?.includes('ended'));
      expect(await page.locator('[data-testid=open-service]').count()).toBe(0);
      expect((await admin.services.get(svc.id)).status).toBe('stopped');
      expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(await page.title()).toBe('kiln');

      // A service whose command fails ends `terminated` with its reason, and the list says so.
      const crashing = await admin.services.create({ command: 'exit 4', port: 8000 });
      await eventually('the failing service to end', async () => (await admin.services.get(crashing.id)).status === 'terminated', 30_000);
      await page.click('nav a:has-text("Services")');
      await page.selectOption('form[aria-label="filter services"] select[name=status]', 'terminated');
      const crashed = page.locator(`tr[data-service="${crashing.id}"]`);
      await crashed.waitFor();
      expect(await crashed.textContent()).toContain(`terminated ${(await admin.services.get(crashing.id)).reason}`);

      // The list filters by status; another tenant's (or no) service shows the API's 404.
      await page.selectOption('form[aria-label="filter services"] select[name=status]', 'running');
      await page.waitForSelector('text=No services.');
      await page.selectOption('form[aria-label="filter services"] select[name=status]', 'stopped');
      await row.waitFor();
      await page.evaluate(() => (location.hash = '#/services/svc_0000000000000000000000000'));
      const missing = page.locator('[role=alert][data-code=NOT_FOUND]');
      await missing.waitFor();
      expect(await missing.textContent()).toContain('404');
    });
  });

  it('the page policy blocks inline script even where markup got in', async () => {
    await step('csp', async () => {
      // Markup injected by the test itself (as a flaw would): the CSP refuses its inline handler.
      const violated = await page.evaluate(
        () =>
          new Promise<string>((done) => {
            document.addEventListener('securitypolicyviolation', (e) => done(e.violatedDirective), { once: true });
            document.body.insertAdjacentHTML('beforeend', '<img src="data:," onerror="window.__pwned=\'csp\'" onload="window.__pwned=\'csp\'">');
          }),
      );
      expect(violated).toMatch(/^script-src/);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(dialogs).toBe(0);
      expect(pageErrors).toEqual([]);
    });
  });

  it('an over-the-ceiling job is refused on the page with its code and field, and an agent sees only its own jobs', async () => {
    await step('refused', async () => {
      await page.goto(`${kiln.url}/ui/#/jobs`);
      await page.click('summary:has-text("Run a job")');
      await page.selectOption('select[name=language]', 'python');
      await page.fill('textarea[name=code]', 'print(1)');
      await page.fill('input[name=wall_time_ms]', '86400000');
      await page.click('form[aria-label="run a job"] button[type=submit]');
      const problem = page.locator('form[aria-label="run a job"] [role=alert]');
      await problem.waitFor();
      expect(await problem.getAttribute('data-code')).toBe('POLICY_VIOLATION');
      expect(await problem.textContent()).toContain('body.limits.wall_time_ms');

      await signIn(agentKey);
      expect(await page.textContent('[data-testid=whoami]')).toContain('agent');
      await page.waitForSelector('text=No jobs.');
      // The tenant admin's services are not the agent's: its list is empty.
      await page.click('nav a:has-text("Services")');
      await page.waitForSelector('text=No services.');
      // A page the agent's key may not read shows the API's refusal.
      await page.evaluate(() => (location.hash = '#/runners'));
      const refused = page.locator('[role=alert][data-code=FORBIDDEN]');
      await refused.waitFor();
      expect(await refused.textContent()).toContain('403');
    });
  });

  it('the operator drains a runner from the page', async () => {
    await step('drain', async () => {
      await signIn(kiln.adminKey);
      await page.click('nav a:has-text("Runners")');
      const row = page.locator('tr[data-runner="runner-1"]');
      await row.locator('button:has-text("Drain")').click();
      await row.locator('text=draining').first().waitFor();
      const runners = await kiln.operator.runners.list({ limit: 10 });
      expect(runners.items.find((r) => r.name === 'runner-1')?.draining).toBe(true);
      // The fleet's sandboxes: the job's instance is listed.
      await page.click('nav a:has-text("Sandboxes")');
      await eventually('the sandboxes table', async () => (await page.textContent('main'))?.includes('sbx_'));
    });
  });
});
