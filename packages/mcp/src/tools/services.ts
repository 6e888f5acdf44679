import { KilnError, SERVICE_TOKEN_HEADER, type ServiceToken } from '@kiln/core';
import { Sandbox, type KilnClient, type KilnClientOptions } from '@kiln/sdk';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { guarded, toolResult } from '../results.js';
import { idSchema } from './ids.js';

/** The longest a token minted by get_service_url lives (the API's own ceiling). */
export const TOKEN_MAX_TTL_SECONDS = 30 * 24 * 3600;

// Built once per process (zod compiles a schema on its first use; `/mcp` builds a server per request).
const getServiceUrlInput = z.object({
  service_id: idSchema('svc', 'the service whose URL to answer').optional(),
  sandbox_id: idSchema('ses', 'instead of a service: a sandbox from create_sandbox, whose `port` to open').optional(),
  port: z.number().int().min(1).max(65_535).optional().describe('with sandbox_id: the port a server inside the sandbox listens on'),
  token: z
    .boolean()
    .optional()
    .describe('also mint a token that opens this service (or this sandbox port) alone, so a browser or another program can open it without a kiln key'),
  token_ttl_seconds: z
    .number()
    .int()
    .min(1)
    .max(TOKEN_MAX_TTL_SECONDS)
    .optional()
    .describe('how long the token works; default 3600 (giving it implies token: true, unless token is false)'),
});
type GetServiceUrlArgs = z.infer<typeof getServiceUrlInput>;

const HEADER = SERVICE_TOKEN_HEADER.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());

/** What a minted token adds to the answer: the token, its header, and the URL a browser opens once. */
function tokenFields(token: ServiceToken) {
  return {
    token: token.token,
    token_id: token.id,
    token_header: HEADER,
    token_expires_at: token.expires_at,
    browser_url: token.url,
  };
}

function howToOpen(minted: boolean, isPublic: boolean): string {
  if (isPublic) return 'public: anyone with `url` opens it';
  const withKey = 'open `url` with a kiln key of the tenant (Authorization: Bearer …)';
  return minted
    ? `${withKey}, or with \`token\` in the ${HEADER} header, or open \`browser_url\` once in a browser (it then keeps a cookie for this URL alone)`
    : `${withKey}; for a browser or another program, ask again with token: true`;
}

/** The minted token's URL without its query: the URL itself, as the control plane spells it. */
const withoutQuery = (url: string) => url.split('?')[0]!;

/**
 * `get_service_url`: where a service (or a port of a sandbox) is opened, through the control plane's
 * proxy, and optionally a token scoped to it alone. Another tenant's service or sandbox is NOT_FOUND.
 */
export function registerServiceTools(server: McpServer, client: KilnClient, options: KilnClientOptions, publicUrl: string): void {
  server.registerTool(
    'get_service_url',
    {
      title: 'Get the URL of a service or a sandbox port',
      description:
        'Answers the URL where a kiln service (service_id), or a server listening on a port of a sandbox from create_sandbox ' +
        '(sandbox_id and port), is opened through kiln\'s proxy, with its status. It is private by default: the URL opens with ' +
        'the tenant\'s kiln key; with token: true (or token_ttl_seconds) it also mints a token that opens this service or port ' +
        'alone, and answers `browser_url` (the URL with ?kiln_token=…) for a person or a headless browser to open.',
      inputSchema: getServiceUrlInput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    (args) =>
      guarded(async () => {
        const minting = args.token ?? args.token_ttl_seconds !== undefined;
        const ttl = args.token_ttl_seconds !== undefined ? { ttl_seconds: args.token_ttl_seconds } : {};
        const target = targetOf(args);
        if (target.kind === 'service') {
          const service = await client.services.get(target.id);
          const token = minting ? await client.services.createToken(service.id, ttl) : undefined;
          return toolResult({
            service_id: service.id,
            status: service.status,
            reason: service.reason,
            port: service.port,
            public: service.public,
            url: service.proxy_url,
            expires_at: service.expires_at,
            how_to_open: howToOpen(token !== undefined, service.public),
            ...(token ? tokenFields(token) : {}),
            ...(service.status !== 'running' ? { note: `the service is ${service.status}${service.reason ? ` (${service.reason})` : ''}: the URL answers only while it runs` } : {}),
          });
        }
        const sandbox = await Sandbox.connect(target.id, options);
        const token = minting ? await sandbox.getPortToken(target.port, { ...(args.token_ttl_seconds !== undefined ? { ttlSeconds: args.token_ttl_seconds } : {}) }) : undefined;
        // The SDK's getHost on the public URL (the client may call the API on another, e.g. in `/mcp`).
        const url = token ? withoutQuery(token.url) : `${publicUrl.replace(/\/+$/, '')}${sandbox.path}/ports/${target.port}/proxy/`;
        return toolResult({
          sandbox_id: target.id,
          status: (await sandbox.getInfo()).status,
          port: target.port,
          url,
          how_to_open: howToOpen(token !== undefined, false),
          ...(token ? tokenFields(token) : {}),
          note: 'the URL answers while a server inside the sandbox listens on this port (start one with run_command, background: true)',
        });
      }),
  );
}

type Target = { kind: 'service'; id: string } | { kind: 'session'; id: string; port: number };

/** Exactly one of a service, or a sandbox with its port; refused as VALIDATION_FAILED otherwise. */
function targetOf(args: GetServiceUrlArgs): Target {
  if (args.service_id !== undefined) {
    if (args.sandbox_id !== undefined || args.port !== undefined) {
      throw new KilnError('VALIDATION_FAILED', 'give either service_id, or sandbox_id with port, not both', { field: 'sandbox_id' });
    }
    return { kind: 'service', id: args.service_id };
  }
  if (args.sandbox_id === undefined) throw new KilnError('VALIDATION_FAILED', 'give service_id, or sandbox_id with port', { field: 'service_id' });
  if (args.port === undefined) throw new KilnError('VALIDATION_FAILED', 'sandbox_id needs the port a server in the sandbox listens on', { field: 'port' });
  return { kind: 'session', id: args.sandbox_id, port: args.port };
}
