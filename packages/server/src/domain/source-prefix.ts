import ipaddr from 'ipaddr.js';

/**
 * The network a client address belongs to, as counted for abuse limits: an IPv4 /24 or an IPv6 /64 (one
 * host often holds a whole /64, so counting single v6 addresses counts nothing). An IPv4-mapped v6
 * address is its v4 address. Anything unparseable is `unknown` (one shared bucket).
 */
export function sourcePrefixOf(address: string | undefined): string {
  if (!address || !ipaddr.isValid(address)) return 'unknown';
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  if (ip.kind() === 'ipv4') {
    const [a, b, c] = (ip as ipaddr.IPv4).octets;
    return `${a}.${b}.${c}.0/24`;
  }
  const parts = (ip as ipaddr.IPv6).parts.slice(0, 4);
  return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
}
