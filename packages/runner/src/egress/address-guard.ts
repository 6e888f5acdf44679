import ipaddr from 'ipaddr.js';

/**
 * Which addresses the egress proxy may connect to: public unicast only, unless the operator opened a
 * range (KILN_EGRESS_ALLOW_PRIVATE_CIDRS). Loopback, private, link-local (and so the 169.254.169.254
 * metadata service), CGNAT, multicast, reserved and unspecified addresses are refused in IPv4, IPv6 and
 * every IPv6 form that embeds an IPv4 address (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64,
 * 6to4, Teredo), since the kernel or a gateway may turn those back into the IPv4 address.
 */
export type AddressVerdict = { allowed: true } | { allowed: false; range: string };

export class AddressGuard {
  constructor(private readonly operatorRanges: readonly [ipaddr.IPv4 | ipaddr.IPv6, number][] = []) {}

  check(address: string): AddressVerdict {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.parse(address);
    } catch {
      return { allowed: false, range: 'invalid' };
    }
    if (this.operatorAllows(parsed)) return { allowed: true };
    if (parsed.kind() === 'ipv6') {
      const v6 = parsed as ipaddr.IPv6;
      if (v6.isIPv4MappedAddress()) {
        const v4 = v6.toIPv4Address();
        // The mapped form reaches the IPv4 address: judge that one (an operator range may name it).
        return this.operatorAllows(v4) ? { allowed: true } : publicOnly(v4);
      }
      // ::a.b.c.d (deprecated "compatible" form) and :: itself: the first 96 bits are zero.
      if (v6.parts.slice(0, 6).every((p) => p === 0)) return { allowed: false, range: v6.range() === 'loopback' ? 'loopback' : 'ipv4Compatible' };
      // Outside 2000::/3 nothing is global unicast today.
      if ((v6.parts[0]! & 0xe000) !== 0x2000) return { allowed: false, range: v6.range() };
    }
    return publicOnly(parsed);
  }

  private operatorAllows(address: ipaddr.IPv4 | ipaddr.IPv6): boolean {
    return this.operatorRanges.some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));
  }
}

function publicOnly(address: ipaddr.IPv4 | ipaddr.IPv6): AddressVerdict {
  const range = address.range();
  return range === 'unicast' ? { allowed: true } : { allowed: false, range };
}
