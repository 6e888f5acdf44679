import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { AddressGuard } from './address-guard.js';

describe('AddressGuard', () => {
  const guard = new AddressGuard();

  it.each([
    '127.0.0.1', '127.9.9.9', '10.0.0.1', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '100.100.100.200', '0.0.0.0', '255.255.255.255', '224.0.0.1', '240.0.0.1', '192.0.2.1',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd00:ec2::254', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '::ffff:7f00:1', '::127.0.0.1',
    '64:ff9b::7f00:1', '2002:7f00:1::', '2001:0:7f00:1::1', '2001:db8::1', 'not-an-ip',
  ])('refuses %s', (address) => {
    expect(guard.check(address).allowed).toBe(false);
  });

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:93.184.216.34'])('allows the public address %s', (address) => {
    expect(guard.check(address)).toEqual({ allowed: true });
  });

  it('allows only the ranges the operator opened, in every form', () => {
    const opened = new AddressGuard([ipaddr.parseCIDR('10.20.0.0/16'), ipaddr.parseCIDR('fd00:20::/64')]);
    expect(opened.check('10.20.3.4').allowed).toBe(true);
    expect(opened.check('::ffff:10.20.3.4').allowed).toBe(true);
    expect(opened.check('fd00:20::5').allowed).toBe(true);
    expect(opened.check('10.21.0.1').allowed).toBe(false);
    expect(opened.check('127.0.0.1').allowed).toBe(false);
    expect(opened.check('fd00:21::5').allowed).toBe(false);
  });
});
