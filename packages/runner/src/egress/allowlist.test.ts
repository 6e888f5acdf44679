import { describe, expect, it } from 'vitest';
import { egressConfigFromEnv } from './config.js';
import { Allowlist } from './allowlist.js';

describe('Allowlist', () => {
  const list = new Allowlist(['api.example.com:443', '*.example.org:443', 'pypi.org', 'git.example.net:*']);

  it('matches exact names and ports, case- and trailing-dot-insensitively', () => {
    expect(list.allows('api.example.com', 443)).toBe(true);
    expect(list.allows('API.Example.COM.', 443)).toBe(true);
    expect(list.allows('api.example.com', 80)).toBe(false);
    expect(list.allows('x.api.example.com', 443)).toBe(false);
    expect(list.allows('api.example.com.evil.test', 443)).toBe(false);
  });

  it('matches a wildcard under its domain only, never the domain itself or a look-alike', () => {
    expect(list.allows('files.example.org', 443)).toBe(true);
    expect(list.allows('a.b.example.org', 443)).toBe(true);
    expect(list.allows('example.org', 443)).toBe(false);
    expect(list.allows('badexample.org', 443)).toBe(false);
    expect(list.allows('files.example.org', 8443)).toBe(false);
  });

  it('reads a name without a port as the web ports, and :* as any port', () => {
    expect(list.allows('pypi.org', 443)).toBe(true);
    expect(list.allows('pypi.org', 80)).toBe(true);
    expect(list.allows('pypi.org', 22)).toBe(false);
    expect(list.allows('git.example.net', 22)).toBe(true);
  });

  it('allows nothing when the list is empty', () => {
    expect(new Allowlist([]).allows('api.example.com', 443)).toBe(false);
  });
});

describe('egressConfigFromEnv', () => {
  it('has defaults and refuses a bad range with the variable named', () => {
    expect(egressConfigFromEnv({}).KILN_EGRESS_MAX_CONNECTIONS).toBe(64);
    expect(() => egressConfigFromEnv({ KILN_EGRESS_ALLOW_PRIVATE_CIDRS: '10.0.0.0' })).toThrow(/KILN_EGRESS_ALLOW_PRIVATE_CIDRS/);
    expect(() => egressConfigFromEnv({ KILN_EGRESS_MAX_BYTES: '-1' })).toThrow(/KILN_EGRESS_MAX_BYTES/);
  });
});
