import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';

/**
 * Name resolution for the egress proxy: the proxy asks DNS itself (never the sandbox, which has no
 * route to a resolver) and then connects to an address it checked, so a name that answers differently
 * the second time (DNS rebinding) cannot slip past the check. c-ares (node:dns Resolver), not the
 * host's getaddrinfo: /etc/hosts entries of the runner host are not a tenant's business.
 */
export interface ResolvedHost {
  /** IPv4 addresses first: most runner hosts route IPv4 at least. */
  addresses: string[];
}

export interface HostResolverOptions {
  /** `ip[:port]` servers; empty for the host's resolv.conf. */
  servers: readonly string[];
  timeoutMs: number;
}

export class HostResolver {
  private readonly resolver: Resolver;

  constructor(options: HostResolverOptions) {
    this.resolver = new Resolver({ timeout: options.timeoutMs, tries: 2 });
    if (options.servers.length > 0) this.resolver.setServers([...options.servers]);
  }

  /** Every address of `host` (an IP literal is its own answer); rejects when the name has none. */
  async resolve(host: string): Promise<ResolvedHost> {
    if (isIP(host)) return { addresses: [host] };
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (addresses.length === 0) {
      const reason = v4.status === 'rejected' ? (v4.reason as Error).message : 'no address';
      throw new Error(`cannot resolve ${host}: ${reason}`);
    }
    return { addresses };
  }
}
