import { describe, expect, it } from 'vitest';
import { sourcePrefixOf } from './source-prefix.js';

describe('sourcePrefixOf', () => {
  it('counts IPv4 by /24 and IPv6 by /64, mapped v4 as v4', () => {
    expect(sourcePrefixOf('203.0.113.77')).toBe('203.0.113.0/24');
    expect(sourcePrefixOf('::ffff:203.0.113.9')).toBe('203.0.113.0/24');
    expect(sourcePrefixOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourcePrefixOf('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(sourcePrefixOf('not an address')).toBe('unknown');
    expect(sourcePrefixOf(undefined)).toBe('unknown');
  });
});
