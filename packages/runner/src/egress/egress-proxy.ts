import { chmodSync, chownSync, mkdirSync, rmSync } from 'node:fs';
import { nativeHelperPath } from '../sandbox/native-paths.js';
import { runtimeSubdir } from '../sandbox/runtime-dir.js';
import { AddressGuard } from './address-guard.js';
import { egressConfigFromEnv, type EgressConfig } from './config.js';
import type { EgressSummary } from './egress-stats.js';
import { HostResolver } from './resolver.js';
import { SandboxGate, type EgressLogger, type GateIdentity } from './sandbox-gate.js';

/** Where a sandbox sees its proxy socket's folder (bound read-only; the relay connects to the socket). */
export const EGRESS_DIR_INSIDE = '/run/kiln-egress';
export const EGRESS_SOCKET_NAME = 'proxy.sock';

export interface OpenGateOptions extends GateIdentity {
  /** The policy's `network.allow` patterns. */
  allow: readonly string[];
  /** The sandbox's host uid and gid: only they (and root) may connect to its socket. */
  uid: number;
  gid: number;
}

/** A sandbox's way out, as the sandbox launcher uses it. */
export interface EgressLease {
  /** Host folder to bind at EGRESS_DIR_INSIDE. */
  readonly hostDir: string;
  /** The relay's arguments inside: `PORT SOCKET_PATH`. */
  readonly relayArgs: [string, string];
  /** HTTP_PROXY and friends, for the sandbox's environment. */
  readonly env: Record<string, string>;
  /** Ends the sandbox's egress (open connections are cut) and answers what it did. */
  close(): Promise<EgressSummary>;
}

const silent: EgressLogger = { info: () => undefined, warn: () => undefined };

/**
 * The runner's egress proxy (ARCHITECTURE.md §8): one gate per sandbox with `egress: "allowlist"`, each
 * an HTTP proxy on a Unix socket of its own, so which socket a connection came in on is which sandbox
 * (and policy) it is, with no address or header a sandbox could forge.
 */
export class EgressProxy {
  readonly config: EgressConfig;
  private readonly guard: AddressGuard;
  private readonly resolver: HostResolver;
  private readonly gates = new Map<string, SandboxGate>();

  constructor(config: EgressConfig = egressConfigFromEnv(), private readonly logger: EgressLogger = silent) {
    this.config = config;
    this.guard = new AddressGuard(config.KILN_EGRESS_ALLOW_PRIVATE_CIDRS);
    this.resolver = new HostResolver({ servers: config.KILN_EGRESS_RESOLVER, timeoutMs: config.KILN_EGRESS_DNS_TIMEOUT_MS });
  }

  /** Open gates now (tests and metrics). */
  get openGates(): number {
    return this.gates.size;
  }

  async open(options: OpenGateOptions): Promise<EgressLease> {
    const { allow, uid, gid, ...identity } = options;
    const hostDir = `${runtimeSubdir('egress')}/${identity.sandbox_id}`;
    rmSync(hostDir, { recursive: true, force: true });
    mkdirSync(hostDir, { mode: 0o700 });
    const gate = new SandboxGate(identity, allow, {
      config: this.config,
      guard: this.guard,
      resolver: this.resolver,
      logger: this.logger,
      pumpPath: nativeHelperPath('kiln-egress-pump'),
      runAs: { uid, gid },
    });
    const socketPath = `${hostDir}/${EGRESS_SOCKET_NAME}`;
    try {
      await gate.listen(socketPath);
      chownSync(socketPath, uid, gid);
      chmodSync(socketPath, 0o600);
      chownSync(hostDir, uid, gid);
      chmodSync(hostDir, 0o500);
    } catch (err) {
      await gate.close();
      rmSync(hostDir, { recursive: true, force: true });
      throw err;
    }
    this.gates.set(identity.sandbox_id, gate);
    const proxyUrl = `http://127.0.0.1:${this.config.KILN_EGRESS_SANDBOX_PORT}`;
    let closing: Promise<EgressSummary> | undefined;
    return {
      hostDir,
      relayArgs: [String(this.config.KILN_EGRESS_SANDBOX_PORT), `${EGRESS_DIR_INSIDE}/${EGRESS_SOCKET_NAME}`],
      env: proxyEnv(proxyUrl),
      close: () => {
        closing ??= gate.close().then((summary) => {
          this.gates.delete(identity.sandbox_id);
          rmSync(hostDir, { recursive: true, force: true });
          if (summary.connections_denied > 0) {
            this.logger.warn({ ...identity, ...summary }, 'egress denials of the sandbox');
          }
          return summary;
        });
        return closing;
      },
    };
  }

  /** Closes every gate (runner shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.gates.values()].map((g) => g.close()));
    this.gates.clear();
  }
}

/**
 * Both spellings, since tools disagree (curl reads only lower-case http_proxy; others read upper case).
 * NO_PROXY keeps the sandbox's own servers on loopback direct.
 */
function proxyEnv(url: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY']) {
    env[name] = url;
    env[name.toLowerCase()] = url;
  }
  env.NO_PROXY = env.no_proxy = 'localhost,127.0.0.1,::1';
  return env;
}
