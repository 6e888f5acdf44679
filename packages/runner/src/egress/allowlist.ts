/**
 * A policy's `network.allow` patterns (validated in core's ruleset schema) as a matcher. Patterns are
 * `host:port`, `*.domain:port` (any name under the domain, not the domain itself), `host:*` (any port),
 * or `host` alone, which means the web ports 80 and 443. Names compare case-insensitively, without a
 * trailing dot. Matching is plain string work: a tenant's pattern never becomes a RegExp.
 */
export interface AllowRule {
  /** Lower-case name, without the `*.` of a wildcard. */
  host: string;
  wildcard: boolean;
  /** null: any port. */
  ports: number[] | null;
}

const WEB_PORTS = [80, 443];

export function parseAllowRule(pattern: string): AllowRule {
  const at = pattern.lastIndexOf(':');
  let host = at >= 0 ? pattern.slice(0, at) : pattern;
  const portText = at >= 0 ? pattern.slice(at + 1) : '';
  let ports: number[] | null = WEB_PORTS;
  if (portText === '*') ports = null;
  else if (portText !== '') {
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`bad port in allow pattern ${JSON.stringify(pattern)}`);
    ports = [port];
  }
  const wildcard = host.startsWith('*.');
  if (wildcard) host = host.slice(2);
  return { host: normalizeHost(host), wildcard, ports };
}

/** Lower case, no trailing dot: the form names are compared in. */
export function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export class Allowlist {
  private readonly rules: AllowRule[];

  constructor(patterns: readonly string[]) {
    this.rules = patterns.map(parseAllowRule);
  }

  /** Whether `host:port` (host as the client named it) is allowed. */
  allows(host: string, port: number): boolean {
    const name = normalizeHost(host);
    return this.rules.some(
      (r) =>
        (r.ports === null || r.ports.includes(port)) &&
        (r.wildcard ? name.length > r.host.length + 1 && name.endsWith(`.${r.host}`) : name === r.host),
    );
  }
}
