import type { Command } from 'commander';
import { apiCommand, clientFor, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('list and revoke API keys (never their secrets)');
  withPaging(apiCommand(keys, 'list', "list keys (tenant: its own and its agents'; operator: all)")).action(
    async (flags: ApiFlags & { limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).keys.list(pageQuery(flags));
      show(flags, page, (p) => table(p.items, ['id', 'kind', 'tenant_id', 'agent_id', 'created_at', 'last_used_at', 'revoked_at']));
    },
  );
  apiCommand(keys, 'revoke', 'revoke a key: it is refused from the next request')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).keys.revoke(id), fields));
}
