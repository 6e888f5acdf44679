import type { IncomingHttpHeaders } from 'node:http';
import { KilnError, SERVICE_TOKEN_HEADER, SERVICE_TOKEN_QUERY } from '@kiln/core';
import { parseApiKey } from '../../domain/keys.js';
import { getService, touchService } from '../../store/services.js';
import { getSession, touchSession } from '../../store/sessions.js';
import { authenticate, type AuthSecrets } from '../auth.js';
import type { JobDeps } from '../job-deps.js';
import { visibleToAgent } from '../jobs.js';
import type { RunnerEndpoint } from '../sessions/runner-link.js';
import type { ServiceHosting } from './hosting.js';
import { runnerEndpoint } from '../sessions/lifecycle.js';
import { GrantCache, type CachedGrant } from './grant-cache.js';
import { tokenOpensUntil, type TokenScope } from './tokens.js';

/** The cookie a `?kiln_token=` leaves, scoped to the one service (its path, or its host). */
export const SERVICE_TOKEN_COOKIE = 'kiln_service_token';

const ID = '[A-Za-z0-9_-]{1,128}';
const SERVICE_PATH = new RegExp(`^/v1/services/(${ID})/proxy(?=$|[/?])`);
const SESSION_PORT_PATH = new RegExp(`^/v1/sessions/(${ID})/ports/([0-9]{1,5})/proxy(?=$|[/?])`);
/** Host labels: `svc_…` (or `svc-…`, the DNS-safe spelling) and `{port}-ses_…` (or `{port}-ses-…`). */
const SERVICE_LABEL = /^svc[_-]([0-9a-z]{1,64})$/;
const SESSION_PORT_LABEL = /^([0-9]{1,5})-ses[_-]([0-9a-z]{1,64})$/;

/** Where a proxied request goes, read from its path or its Host. */
export interface ProxyTarget {
  scope: TokenScope;
  /** what the sandbox's server sees: `/rest?query` (kiln_token removed) */
  upstreamPath: string;
  /** the path the credential cookie is scoped to */
  cookiePath: string;
  /** the token sent as `?kiln_token=`, if any */
  queryToken: string | undefined;
}

/** The proxied target of a request, or undefined when the request is not proxied traffic. */
export function proxyTargetOf(url: string, host: string | undefined, hosting: ServiceHosting): ProxyTarget | undefined {
  const hostName = host?.toLowerCase().replace(/:\d+$/, '');
  if (hosting.domain && hostName?.endsWith(`.${hosting.domain}`)) {
    const label = hostName.slice(0, -hosting.domain.length - 1);
    const service = SERVICE_LABEL.exec(label);
    const sessionPort = SESSION_PORT_LABEL.exec(label);
    if (service) return target({ owner_type: 'service', owner_id: `svc_${service[1]}`, port: 0 }, url, '/');
    if (sessionPort) return target({ owner_type: 'session', owner_id: `ses_${sessionPort[2]}`, port: Number(sessionPort[1]) }, url, '/');
    return undefined;
  }
  const service = SERVICE_PATH.exec(url);
  if (service) return target({ owner_type: 'service', owner_id: service[1]!, port: 0 }, url.slice(service[0].length), `/v1/services/${service[1]}/proxy`);
  const sessionPort = SESSION_PORT_PATH.exec(url);
  if (sessionPort) {
    const prefix = `/v1/sessions/${sessionPort[1]}/ports/${sessionPort[2]}/proxy`;
    return target({ owner_type: 'session', owner_id: sessionPort[1]!, port: Number(sessionPort[2]) }, url.slice(sessionPort[0].length), prefix);
  }
  return undefined;
}

function target(scope: TokenScope, rest: string, cookiePath: string): ProxyTarget {
  const path = rest.startsWith('/') ? rest : `/${rest}`;
  const q = path.indexOf('?');
  if (q < 0) return { scope, upstreamPath: path, cookiePath, queryToken: undefined };
  // The token is taken out of the query by hand: the rest of the query reaches the service byte for byte.
  let queryToken: string | undefined;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((pair) => {
      const [name, value = ''] = pair.split('=', 2) as [string, string?];
      if (name !== SERVICE_TOKEN_QUERY) return true;
      try {
        queryToken = decodeURIComponent(value);
      } catch {
        queryToken = '';
      }
      return false;
    });
  return { scope, upstreamPath: kept.length ? `${path.slice(0, q)}?${kept.join('&')}` : path.slice(0, q), cookiePath, queryToken };
}

function cookieToken(cookie: string | undefined): string | undefined {
  if (!cookie) return undefined;
  for (const part of cookie.split(';')) {
    const [name, value] = part.trim().split('=', 2);
    if (name === SERVICE_TOKEN_COOKIE && value) return value;
  }
  return undefined;
}

/** What the proxy may forward: the runner, the runner-side path, and the headers cleaned of kiln's credentials. */
export interface ProxyGrant {
  runner: RunnerEndpoint;
  runnerPath: string;
  /** a `?kiln_token=` that opened the service: the answer sets the cookie */
  setCookieToken: string | undefined;
}

function unauthorized(detail: string): KilnError {
  return new KilnError('UNAUTHORIZED', detail, {
    extra: { hint: `send Authorization: Bearer <key>, ${SERVICE_TOKEN_HEADER}: <token>, or ?${SERVICE_TOKEN_QUERY}=<token> once` },
  });
}

/**
 * Decides whether a proxied request may pass (issue 9, point 3): a tenant or agent key of the owner's
 * tenant (an agent only its own), or a token scoped to exactly this service or session port, or nothing
 * for a public service. Kiln's credentials are removed from `headers` whatever the decision. Another
 * tenant's service and an unknown one answer 404 alike; an ended one 404 too (nothing is there).
 */
export async function grantProxy(
  deps: JobDeps,
  secrets: AuthSecrets,
  hosting: ServiceHosting,
  target: ProxyTarget,
  headers: IncomingHttpHeaders,
): Promise<ProxyGrant> {
  const headerToken = typeof headers[SERVICE_TOKEN_HEADER] === 'string' ? (headers[SERVICE_TOKEN_HEADER] as string) : undefined;
  const cookie = cookieToken(typeof headers.cookie === 'string' ? headers.cookie : undefined);
  const authorization = headers.authorization;
  const bearer = authorization ? /^Bearer +(\S{1,512})$/i.exec(authorization)?.[1] : undefined;
  const kilnKey = bearer !== undefined && (parseApiKey(bearer) !== undefined || bearer === secrets.adminKey);
  stripCredentials(headers, kilnKey);

  const { scope } = target;
  const nowMs = deps.clock.nowMs();
  const presented = target.queryToken ?? headerToken ?? cookie;
  // Which credential decides, as below: a token first, then a kiln key, else none (a public service).
  const credential = presented !== undefined ? `token:${presented}` : kilnKey ? `key:${bearer}` : 'none';
  const cacheKey = GrantCache.keyOf(scope, credential);
  const decided = hosting.grants.get(cacheKey, nowMs) ?? (await decide(deps, secrets, hosting, scope, presented, kilnKey, authorization, cacheKey, nowMs));

  if (hosting.activityDue(scope.owner_id, nowMs)) {
    // Proxied traffic is activity (a session's idle timer restarts); written at most every few seconds.
    const touch = scope.owner_type === 'service' ? touchService(deps.store, scope.owner_id, nowMs) : touchSession(deps.store, scope.owner_id, nowMs);
    touch.catch(() => {});
  }
  const runnerPath =
    scope.owner_type === 'service'
      ? `/v1/services/${scope.owner_id}/proxy${target.upstreamPath}`
      : `/v1/sessions/${scope.owner_id}/ports/${decided.port}/proxy${target.upstreamPath}`;
  return { runner: decided.runner, runnerPath, setCookieToken: target.queryToken };
}

/** The full check against the store; an allowed decision is remembered for the grant cache's short while. */
async function decide(
  deps: JobDeps,
  secrets: AuthSecrets,
  hosting: ServiceHosting,
  scope: TokenScope,
  presented: string | undefined,
  kilnKey: boolean,
  authorization: string | undefined,
  cacheKey: string,
  nowMs: number,
): Promise<CachedGrant> {
  const owner =
    scope.owner_type === 'service'
      ? await getService(deps.store, scope.owner_id)
      : await getSession(deps.store, scope.owner_id);
  const live = owner !== undefined && (scope.owner_type === 'service' ? owner.status === 'starting' || owner.status === 'running' : owner.status === 'active');
  const notFound = new KilnError('NOT_FOUND', `${scope.owner_type} ${scope.owner_id} does not exist or is not running`);
  if (!owner || !owner.runner_id) throw notFound;
  const port = scope.owner_type === 'service' ? ((owner as { port: number | null }).port ?? 0) : scope.port;
  const tokenScope = { ...scope, port };

  let allowed = false;
  let notAfterMs = Infinity;
  if (presented !== undefined) {
    const expiresAtMs = await tokenOpensUntil(deps.store, presented, tokenScope, nowMs);
    if (expiresAtMs === undefined) {
      if (!live) throw notFound;
      throw unauthorized('the service token is not valid for this service (wrong service or port, expired or revoked)');
    }
    allowed = true;
    notAfterMs = expiresAtMs;
  } else if (kilnKey) {
    const principal = await authenticate(deps, secrets, authorization);
    const member = (principal.kind === 'tenant' || principal.kind === 'agent') && principal.tenantId === owner.tenant_id;
    if (!member || !visibleToAgent(principal, owner.agent_id)) throw notFound;
    allowed = true;
  } else if (scope.owner_type === 'service' && (owner as { public: number | null }).public === 1) {
    allowed = true;
  }
  if (!live) throw notFound;
  if (!allowed) throw unauthorized(`${scope.owner_type} ${scope.owner_id} is private`);
  const grant = { runner: await runnerEndpoint(deps.store, owner.runner_id), port };
  hosting.grants.remember(cacheKey, scope.owner_id, grant, nowMs, notAfterMs);
  return grant;
}

/** Kiln's own credentials never reach the sandbox: the token header, the token cookie, a kiln key. */
function stripCredentials(headers: IncomingHttpHeaders, kilnKey: boolean): void {
  delete headers[SERVICE_TOKEN_HEADER];
  if (kilnKey) delete headers.authorization;
  if (typeof headers.cookie === 'string') {
    const kept = headers.cookie
      .split(';')
      .map((c) => c.trim())
      .filter((c) => c !== '' && !c.startsWith(`${SERVICE_TOKEN_COOKIE}=`));
    if (kept.length) headers.cookie = kept.join('; ');
    else delete headers.cookie;
  }
}
