import { createKilnMcpServer } from '@kiln/mcp';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Command } from 'commander';
import { CliError, EXIT } from '../context.js';
import { VERSION } from '../version.js';

/**
 * `kiln mcp`: kiln's tools for an MCP client (Claude Desktop, an IDE, an agent framework) over stdio.
 * Standard output is the protocol's: everything else this process says goes to standard error.
 */
export function registerMcp(program: Command): void {
  program
    .command('mcp')
    .description('serve kiln\'s MCP tools (run_code, sandboxes, artifacts…) over stdio, for an MCP client to spawn')
    .option('--url <url>', 'the control plane URL (default: KILN_URL, else http://127.0.0.1:8080)')
    .option('--api-key <key>', 'a tenant or agent key (default: KILN_API_KEY; prefer the variable: argv is public)')
    .action(async (opts: { url?: string; apiKey?: string }) => {
      const apiKey = opts.apiKey ?? process.env.KILN_API_KEY;
      if (!apiKey) throw new CliError('no API key: set KILN_API_KEY in the MCP client\'s config for `kiln mcp` (a tenant or agent key)', EXIT.auth);
      const url = (opts.url ?? process.env.KILN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
      const server = createKilnMcpServer({ client: { url, apiKey }, version: VERSION });
      const transport = new StdioServerTransport();
      const closed = new Promise<void>((resolve) => {
        transport.onclose = () => resolve();
        // The client closing our stdin is the end of the conversation.
        process.stdin.once('end', () => void server.close());
      });
      await server.connect(transport);
      process.stderr.write(`kiln mcp: serving kiln at ${url} over stdio\n`);
      await closed;
    });
}
