import { KilnClient, type KilnClientOptions } from '@kiln/sdk';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerArtifactTools } from './tools/artifacts.js';
import { registerJobTools } from './tools/jobs.js';
import { registerSandboxTools } from './tools/sandboxes.js';

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
] as const;

export interface KilnMcpOptions {
  /** The kiln API to call, and the key to call it with: every tool acts with exactly that key's rights. */
  client: KilnClientOptions & { url: string; apiKey: string };
  /** Reported to clients as the server's version. */
  version: string;
}

/**
 * kiln as an MCP server: the same tools for `kiln mcp` (stdio) and the control plane's `/mcp`
 * (Streamable HTTP). Every tool calls kiln's HTTP API with the caller's key, so roles, quotas, rate
 * limits, 404s for other tenants' objects and the audit are the API's own, never re-implemented here.
 */
export function createKilnMcpServer(options: KilnMcpOptions): McpServer {
  const server = new McpServer(
    { name: 'kiln', title: 'kiln sandboxed code execution', version: options.version },
    {
      instructions:
        'kiln runs untrusted code in isolated sandboxes. run_code runs a program once; for work across calls, ' +
        'create_sandbox, then run_command / write_file / read_file / list_files, then kill_sandbox. ' +
        'Errors come back as results with a kiln error code (NOT_FOUND, POLICY_VIOLATION, VALIDATION_FAILED, RATE_LIMITED, …).',
    },
  );
  const client = new KilnClient(options.client);
  registerJobTools(server, client);
  registerArtifactTools(server, client);
  registerSandboxTools(server, client, options.client);
  return server;
}
