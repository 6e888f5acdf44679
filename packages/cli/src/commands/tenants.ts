import type { Command } from 'commander';
import { apiCommand, clientFor, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

export function registerTenants(program: Command): void {
  const tenants = program.command('tenants').description('manage tenants (operator key)');
  apiCommand(tenants, 'create', 'create a tenant (it gets a "default" policy)')
    .argument('<name>')
    .action(async (name: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.create({ name }), fields));
  withPaging(apiCommand(tenants, 'list', 'list tenants')).action(async (flags: ApiFlags & { limit?: number; cursor?: string }) => {
    const page = await clientFor(flags).tenants.list(pageQuery(flags));
    show(flags, page, (p) => table(p.items, ['id', 'name', 'status', 'created_at']));
  });
  apiCommand(tenants, 'get', 'show a tenant')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.get(id), fields));
  apiCommand(tenants, 'suspend', "suspend a tenant: its reads work, its writes are refused")
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.suspend(id), (t) => `${t.id} ${t.status}`));
  apiCommand(tenants, 'resume', 'make a suspended tenant active again')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.resume(id), (t) => `${t.id} ${t.status}`));
  apiCommand(tenants, 'create-key', "create a key for the tenant's admin; prints the secret once")
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.createKey(id), (k) => k.key));
  apiCommand(tenants, 'quota', "show the tenant's quota")
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).tenants.getQuota(id), fields));
}
