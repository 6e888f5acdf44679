import { KilnClient, type KilnClientOptions } from '@kiln/sdk';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { registerArtifactTools } from './tools/artifacts.js';
import { registerJobTools } from './tools/jobs.js';
import { registerSandboxTools } from './tools/sandboxes.js';
import { registerServiceTools } from './tools/services.js';

/** The tools every kiln MCP server offers, by name. */
export const KILN_MCP_TOOLS = [
  'run_code',
  'list_languages',
  'get_job',
  'cancel_job',
  'get_artifact',
  'create_sandbox',
  'run_command',
  'write_file',
  'read_file',
  'list_files',
  'kill_sandbox',
  'get_service_url',
] as const;

export interface KilnMcpOptions {
  /** The kiln API to call, and the key to call it with: every tool acts with exactly that key's rights. */
  client: KilnClientOptions & { url: string; apiKey: string };
  /**
   * The URL people and browsers reach the control plane at, which service and sandbox-port URLs name.
   * @default client.url
   */
  publicUrl?: string;
  /** Reported to clients as the server's version. */
  version: string;
}

/**
 * kiln as an MCP server: the same tools for `kiln mcp` (stdio) and the control plane's `/mcp`
 * (Streamable HTTP). Every tool calls kiln's HTTP API with the caller's key, so roles, quotas, rate
 * limits, 404s for other tenants' objects and the audit are the API's own, never re-implemented here.
 */
export function createKilnMcpServer(options: KilnMcpOptions): McpServer {
  const server = buildServer(options);
  // The listing is the same for every caller, and the SDK converts every schema to JSON Schema on each
  // tools/list: with a server per `/mcp` request, answer the SDK's own listing, made once per process.
  server.server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await toolListing() }));
  return server;
}

function buildServer(options: KilnMcpOptions): McpServer {
  const server = new McpServer(
    { name: 'kiln', title: 'kiln sandboxed code execution', version: options.version },
    {
      instructions:
        'kiln runs untrusted code in isolated sandboxes. run_code runs a program once; for work across calls, ' +
        'create_sandbox, then run_command / write_file / read_file / list_files, then kill_sandbox. ' +
        'get_service_url answers where a service or a sandbox port is opened (with a scoped token for a browser). ' +
        'Errors come back as results with a kiln error code (NOT_FOUND, POLICY_VIOLATION, VALIDATION_FAILED, RATE_LIMITED, …).',
    },
  );
  const client = new KilnClient(options.client);
  registerJobTools(server, client);
  registerArtifactTools(server, client);
  registerSandboxTools(server, client, options.client);
  registerServiceTools(server, client, options.client, options.publicUrl ?? options.client.url);
  return server;
}

let listing: Promise<Tool[]> | undefined;

/** The tools as the SDK lists them, asked once of a server of their own over an in-memory pair. */
function toolListing(): Promise<Tool[]> {
  listing ??= (async () => {
    // Its key and URL are never used: listing calls no tool.
    const server = buildServer({ client: { url: 'http://127.0.0.1:0', apiKey: 'listing-only' }, version: '0' });
    const [serverEnd, clientEnd] = InMemoryTransport.createLinkedPair();
    const client = new Client({ name: 'kiln-tool-listing', version: '0' });
    await server.connect(serverEnd);
    await client.connect(clientEnd);
    try {
      return (await client.listTools()).tools;
    } finally {
      await client.close();
      await server.close();
    }
  })();
  // A failure is not kept: the next tools/list tries again.
  listing.catch(() => (listing = undefined));
  return listing;
}
