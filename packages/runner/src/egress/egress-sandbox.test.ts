import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDns, type TestDns } from '../../../../test/support/egress/test-dns.js';
import { startTestHosts, type TestHosts } from '../../../../test/support/egress/test-hosts.js';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { PersistentSandbox } from '../sandbox/persistent/persistent-sandbox.js';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { runtimeDir } from '../sandbox/runtime-dir.js';
import { hostProcessesWith, runSh, TEST_LIMITS, waitFor } from '../sandbox/test-support.js';
import { egressConfigFromEnv } from './config.js';
import { EgressProxy } from './egress-proxy.js';

// Real bubblewrap sandboxes with `egress: "allowlist"`: curl and python inside reach an allowed test
// host through the relay and the runner's proxy (HTTP_PROXY and friends set), and nothing else.
let hosts: TestHosts;
let dns: TestDns;
let proxy: EgressProxy;
let driver: BubblewrapDriver;
const allowlist = { egress: 'allowlist' as const, allow: ['api.allowed.test:80', 'api.allowed.test:443'] };

beforeAll(async () => {
  hosts = await startTestHosts(['api.allowed.test']);
  dns = await startTestDns({ 'api.allowed.test': [hosts.address], 'other.blocked.test': [hosts.address], 'loop.allowed.test': ['127.0.0.1'] });
  proxy = new EgressProxy(egressConfigFromEnv({ KILN_EGRESS_ALLOW_PRIVATE_CIDRS: hosts.cidr, KILN_EGRESS_RESOLVER: dns.server }));
  driver = new BubblewrapDriver({ egress: proxy });
}, 60_000);

afterAll(async () => {
  await proxy?.closeAll();
  hosts?.stop();
  await dns?.stop();
});

const caFile = () => ({ path: 'ca.pem', content: hosts.caPem });

describe('one-shot sandbox with allowlist egress', () => {
  it('reaches an allowed host over HTTP and HTTPS with curl, and is refused another', async () => {
    const script = [
      'curl -sS -o /dev/null -w "plain %{http_code}\\n" http://api.allowed.test/plain',
      'curl -sS --cacert ca.pem -w "\\nsecure %{http_code}\\n" https://api.allowed.test/secure',
      'curl -sS -o /dev/null -w "blocked %{http_code}\\n" http://other.blocked.test/ || true',
      'curl -sS -o /dev/null --cacert ca.pem https://other.blocked.test/ 2>&1 | head -c 300; echo',
    ].join('\n');
    const result = await runSh(driver, script, {}, { network: allowlist, files: [caFile()] });
    const out = result.stdout.toString();
    expect(result.verdict, result.stderr.toString()).toBe('ok');
    expect(out).toContain('plain 200');
    expect(out).toContain('GET /secure host=api.allowed.test');
    expect(out).toContain('secure 200');
    expect(out).toContain('blocked 403');
    expect(out).toMatch(/CONNECT tunnel failed, response 403|403/);
    expect(result.egress).toMatchObject({ connections_allowed: 2, connections_denied: 2 });
    expect(result.egress?.denied).toEqual(
      expect.arrayContaining([expect.objectContaining({ host: 'other.blocked.test', reason: 'not_allowed' })]),
    );
    expect(result.egress!.bytes_received).toBeGreaterThan(0);
    // Nothing of the sandbox's egress outlives it: no relay process, no gate folder.
    expect(await waitFor(() => hostProcessesWith('--egress-relay').length === 0)).toBe(true);
    expect(existsSync(`${runtimeDir()}/egress/${result.sandbox_id}`)).toBe(false);
  });

  it('sets the proxy variables for every tool and works with python urllib unchanged', async () => {
    const script = [
      'env | grep -i _proxy= | sort',
      `python3 -c "import urllib.request as u; print(u.urlopen('http://api.allowed.test/py').read().decode())"`,
    ].join('\n');
    const result = await runSh(driver, script, {}, { network: allowlist });
    const out = result.stdout.toString();
    expect(result.verdict, result.stderr.toString()).toBe('ok');
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
      expect(out).toContain(`${name}=http://127.0.0.1:3128`);
    }
    expect(out).toContain('GET /py host=api.allowed.test');
  });

  it('keeps no route out: a raw socket to the allowed host\'s own address fails, loopback names are refused', async () => {
    const script = [
      'import socket',
      `for target in [("${'ADDR'}", 80), ("1.1.1.1", 443), ("::1", 3128)]:`,
      '    fam = socket.AF_INET6 if ":" in target[0] else socket.AF_INET',
      '    s = socket.socket(fam, socket.SOCK_STREAM)',
      '    s.settimeout(3)',
      '    try:',
      '        s.connect(target)',
      '        print("connected", target[0])',
      '    except OSError as e:',
      '        print("refused", target[0], e.errno)',
      'import urllib.request as u, urllib.error as ue',
      'try:',
      '    u.urlopen("http://loop.allowed.test/")',
      'except ue.HTTPError as e:',
      '    print("proxy said", e.code, e.headers.get("x-kiln-egress"))',
    ]
      .join('\n')
      .replace('ADDR', hosts.address);
    const result = await driver.run({
      command: ['python3', '-c', script],
      limits: TEST_LIMITS,
      network: { egress: 'allowlist', allow: [...allowlist.allow, 'loop.allowed.test:80'] },
    });
    const out = result.stdout.toString();
    expect(result.verdict, result.stderr.toString()).toBe('ok');
    expect(out).toContain(`refused ${hosts.address}`);
    expect(out).toContain('refused 1.1.1.1');
    expect(out).toContain('refused ::1');
    expect(out).not.toContain('connected');
    expect(out).toContain('proxy said 403 address_refused');
  });

  it('leaves egress "none" exactly as before: no proxy variables, no inet sockets', async () => {
    const result = await runSh(
      driver,
      'env | grep -ci _proxy= ; python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)" 2>&1 | tail -1',
      {},
      { network: { egress: 'none' } },
    );
    expect(result.stdout.toString()).toMatch(/^0\n.*(Address family not supported|errno 97)/s);
    expect(result.egress).toBeUndefined();
  });
});

describe('persistent sandbox with allowlist egress', () => {
  it('reaches an allowed host from a command, and its gate closes with the sandbox', async () => {
    const handle = await driver.start({ limits: TEST_LIMITS, network: allowlist });
    if (!(handle instanceof PersistentSandbox)) throw new Error('not a persistent sandbox');
    const gatesOpen = proxy.openGates;
    // Its gate is its own: the socket belongs to the sandbox's host uid alone (not root, no group, no others).
    const socket = statSync(`${runtimeDir()}/egress/${handle.id}/proxy.sock`);
    expect(socket.uid).not.toBe(0);
    expect(socket.mode & 0o077).toBe(0);
    try {
      const ok = await handle.exec(['curl', '-sS', 'http://api.allowed.test/session']);
      expect(ok.stdout.toString()).toContain('GET /session host=api.allowed.test');
      const refused = await handle.exec(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://other.blocked.test/']);
      expect(refused.stdout.toString()).toBe('403');
    } finally {
      await handle.destroy();
    }
    expect(proxy.openGates).toBe(gatesOpen - 1);
    expect(readdirSync(`${runtimeDir()}/egress`)).not.toContain(handle.id);
    expect(handle.egressSummary).toMatchObject({ connections_allowed: 1, connections_denied: 1 });
  });
});
