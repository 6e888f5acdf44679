import { z } from 'zod';
import ipaddr from 'ipaddr.js';

/**
 * The operator's egress settings (KILN_EGRESS_* environment variables of the runner). A tenant's policy
 * says which `host:port` its sandboxes may reach; only these settings can open an address range the
 * proxy refuses by default (loopback, private, link-local, CGNAT, multicast, metadata).
 */
const cidrList = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
    for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      try {
        ranges.push(ipaddr.parseCIDR(item));
      } catch {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(item)} is not a CIDR range such as 10.20.0.0/16` });
        return z.NEVER;
      }
    }
    return ranges;
  });

const serverList = z
  .string()
  .default('')
  .transform((raw) => raw.split(',').map((s) => s.trim()).filter(Boolean));

const int = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);

export const egressConfigSchema = z.object({
  /** Ranges the proxy may connect to although they are not public, e.g. `10.20.0.0/16,fd00:20::/64`. @default none */
  KILN_EGRESS_ALLOW_PRIVATE_CIDRS: cidrList,
  /** DNS servers the proxy asks (`1.2.3.4`, `1.2.3.4:5353`, `[::1]:53`), comma-separated. @default the host's /etc/resolv.conf */
  KILN_EGRESS_RESOLVER: serverList,
  /** Connections one sandbox may hold open at once. @default 64 */
  KILN_EGRESS_MAX_CONNECTIONS: int(1, 100_000, 64),
  /** Connections one sandbox may open over its life. @default 10000 */
  KILN_EGRESS_MAX_TOTAL_CONNECTIONS: int(1, 100_000_000, 10_000),
  /** Bytes (both ways together) one sandbox may move through the proxy over its life. @default 1 GiB */
  KILN_EGRESS_MAX_BYTES: int(1, 2 ** 50, 1024 ** 3),
  /** How long a name lookup may take. @default 5000 */
  KILN_EGRESS_DNS_TIMEOUT_MS: int(100, 60_000, 5_000),
  /** How long a connection to an allowed host may take to open. @default 10000 */
  KILN_EGRESS_CONNECT_TIMEOUT_MS: int(100, 120_000, 10_000),
  /** A tunnel or request with no bytes either way for this long is closed. @default 300000 */
  KILN_EGRESS_IDLE_TIMEOUT_MS: int(1_000, 86_400_000, 300_000),
  /** The port the relay listens on inside the sandbox (127.0.0.1), which HTTP(S)_PROXY name. @default 3128 */
  KILN_EGRESS_SANDBOX_PORT: int(1, 65_535, 3128),
});

export type EgressConfig = z.infer<typeof egressConfigSchema>;

/** Reads the egress settings from the environment; a bad value fails the runner's start with its name. */
export function egressConfigFromEnv(env: NodeJS.ProcessEnv = process.env): EgressConfig {
  const parsed = egressConfigSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid egress setting ${String(issue?.path.join('.'))}: ${issue?.message ?? 'bad value'}`);
  }
  return parsed.data;
}
