import { lookup } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { KilnError } from '@kiln/core';
import ipaddr from 'ipaddr.js';

/** How long a callback may take, connect to answer. */
const CALLBACK_TIMEOUT_MS = 10_000;

/** True when `host` is one the operator allows: an exact name, or `*.suffix` for names under it. */
export function callbackHostAllowed(host: string, allowed: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return allowed.some((rule) => (rule.startsWith('*.') ? name.endsWith(rule.slice(1)) && name.length > rule.length - 1 : name === rule));
}

/**
 * Checks a `callback_url` at submission: http or https, no credentials, a host the operator allows
 * (KILN_JUDGE0_CALLBACK_HOSTS). The addresses are checked again when the callback is sent.
 */
export function checkCallbackUrl(raw: string, allowed: readonly string[]): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new KilnError('VALIDATION_FAILED', 'callback_url is not a URL', { field: 'callback_url' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new KilnError('VALIDATION_FAILED', 'callback_url must be http or https', { field: 'callback_url' });
  }
  if (url.username || url.password) throw new KilnError('VALIDATION_FAILED', 'callback_url must not carry credentials', { field: 'callback_url' });
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!callbackHostAllowed(host, allowed)) {
    throw new KilnError('VALIDATION_FAILED', `callback_url host ${host} is not one the operator allows (KILN_JUDGE0_CALLBACK_HOSTS)`, {
      field: 'callback_url',
    });
  }
  return url;
}

/** Only public unicast addresses: loopback, private, link-local, CGNAT, metadata, multicast… are refused. */
export function isPublicAddress(address: string): boolean {
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  return parsed.range() === 'unicast';
}

/**
 * Sends Judge0's callback: `PUT` of the submission's JSON. The name is resolved here, every address it
 * resolves to must be public, and the connection goes to the address that was checked (never resolved
 * again by the HTTP client), so a name that changes its answer between check and use (DNS rebinding)
 * cannot reach a private address. Redirects are not followed.
 */
export async function sendCallback(url: URL, body: unknown, resolve: typeof lookup = lookup): Promise<number> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await resolve(host, { all: true });
  if (addresses.length === 0 || !addresses.every((a) => isPublicAddress(a.address))) {
    throw new Error(`callback host ${host} resolves to an address that is not public`);
  }
  const target = addresses[0]!;
  const payload = Buffer.from(JSON.stringify(body));
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((done, fail) => {
    const req = send(
      url,
      {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'content-length': payload.length, host: url.host },
        timeout: CALLBACK_TIMEOUT_MS,
        ...(url.protocol === 'https:' ? { servername: isIP(host) ? undefined : host } : {}),
        // Node asks for every address when it races IPv4 and IPv6 (autoSelectFamily): the checked one.
        lookup: (_name, options, callback) => {
          const answer = callback as (e: null, a: string | { address: string; family: number }[], f?: number) => void;
          if ((options as { all?: boolean }).all) answer(null, [{ address: target.address, family: target.family }]);
          else answer(null, target.address, target.family);
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('callback timed out')));
    req.on('error', fail);
    req.end(payload);
  });
}
