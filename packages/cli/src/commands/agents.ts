import type { Command } from 'commander';
import { apiCommand, clientFor, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

export function registerAgents(program: Command): void {
  const agents = program.command('agents').description("manage a tenant's agents (tenant admin key)");
  apiCommand(agents, 'create', 'create an agent')
    .argument('<name>')
    .option('--type <type>', 'what kind of agent (default assistant)')
    .action(async (name: string, flags: ApiFlags & { type?: string }) =>
      show(flags, await clientFor(flags).agents.create({ name, ...(flags.type ? { type: flags.type } : {}) }), fields));
  withPaging(apiCommand(agents, 'list', 'list agents')).action(async (flags: ApiFlags & { limit?: number; cursor?: string }) => {
    const page = await clientFor(flags).agents.list(pageQuery(flags));
    show(flags, page, (p) => table(p.items, ['id', 'name', 'type', 'status', 'created_at']));
  });
  apiCommand(agents, 'get', 'show an agent')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).agents.get(id), fields));
  apiCommand(agents, 'disable', "disable an agent: its keys answer 403 AGENT_DISABLED")
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).agents.disable(id), (a) => `${a.id} ${a.status}`));
  apiCommand(agents, 'enable', 'enable a disabled agent')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).agents.enable(id), (a) => `${a.id} ${a.status}`));
  apiCommand(agents, 'create-key', 'create a key that acts as the agent; prints the secret once')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).agents.createKey(id), (k) => k.key));
}
