import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

/**
 * The test "internet" for egress tests: a network namespace of its own, joined to the host by a veth
 * pair on a private /30 (which the tests' operator setting KILN_EGRESS_ALLOW_PRIVATE_CIDRS opens), with
 * one host serving HTTP (:80), HTTPS (:443, a certificate of a test CA for the names given) and a
 * WebSocket echo (:8080). No outside network is used. Root only (ip netns).
 */
export interface TestHosts {
  /** The host's address, as DNS answers give it. */
  address: string;
  /** The range to allow in KILN_EGRESS_ALLOW_PRIVATE_CIDRS. */
  cidr: string;
  /** PEM of the test CA that signed the host's certificate. */
  caPem: string;
  caPath: string;
  /** Connections the host accepted so far (HTTP, HTTPS, WebSocket). */
  connections(): Promise<number>;
  stop(): void;
}

const serverScript = fileURLToPath(new URL('./host-server.mjs', import.meta.url));

export interface TestHostsOptions {
  /** Shapes what the host sends to this rate (tc tbf), as a link to a remote host would (benchmarks). */
  rateMbit?: number;
}

export async function startTestHosts(names: readonly string[], options: TestHostsOptions = {}): Promise<TestHosts> {
  // A /30 picked from the pid, so test files running at once do not collide.
  const third = 100 + (process.pid % 150);
  const fourth = 4 * Math.floor(Math.random() * 60);
  const net = `10.231.${third}`;
  const hostSide = `${net}.${fourth + 1}`;
  const address = `${net}.${fourth + 2}`;
  const tag = `${process.pid.toString(36)}${fourth.toString(36)}`;
  const ns = `kiln-egr-${tag}`;
  const veth = `kegr${tag}`.slice(0, 15);
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const certDir = mkdtempSync(`${tmpdir()}/kiln-egress-ca-`);
  makeCertificates(certDir, names);
  let server: ChildProcess | undefined;
  const stop = () => {
    server?.kill('SIGKILL');
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
    rmSync(certDir, { recursive: true, force: true });
  };
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('addr', 'add', `${hostSide}/30`, 'dev', veth);
    ip('link', 'set', veth, 'up');
    ip('-n', ns, 'addr', 'add', `${address}/30`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    if (options.rateMbit !== undefined) {
      execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', `${options.rateMbit}mbit`, 'burst', '1mb', 'latency', '50ms'], { stdio: 'pipe' });
    }
    server = spawn('ip', ['netns', 'exec', ns, process.execPath, serverScript, certDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`test host did not start: ${err}`)), 15_000);
      server!.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server!.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      server!.once('exit', (code) => reject(new Error(`test host exited (${code}): ${err}`)));
    });
  } catch (err) {
    stop();
    throw err;
  }
  return {
    address,
    cidr: `${address}/32`,
    caPem: readFileSync(`${certDir}/ca.pem`, 'utf8'),
    caPath: `${certDir}/ca.pem`,
    connections: async () => Number(await (await fetch(`http://${address}/connections`)).text()) - 1,
    stop,
  };
}

/** A test CA and a certificate it signed for the names (openssl, on every Debian machine). */
function makeCertificates(dir: string, names: readonly string[]): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=kiln egress test CA');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'host.key', '-out', 'host.csr', '-subj', `/CN=${names[0]}`);
  const san = `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`;
  execFileSync('sh', ['-c', `printf '%s\\n' "$1" > ext.cnf`, 'sh', san], { cwd: dir });
  ssl('x509', '-req', '-in', 'host.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'host.pem', '-days', '2', '-extfile', 'ext.cnf');
}
