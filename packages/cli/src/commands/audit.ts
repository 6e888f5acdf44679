import type { Command } from 'commander';
import { apiCommand, CliError, clientFor, EXIT, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit trail');
  withPaging(apiCommand(audit, 'list', 'list audit events'))
    .option('--outcome <outcome>', 'only this outcome (success, denied, failure)')
    .option('--action <action>', 'only this action (e.g. job.create)')
    .action(async (flags: ApiFlags & { limit?: number; cursor?: string; outcome?: string; action?: string }) => {
      const page = await clientFor(flags).audit.list({ ...pageQuery(flags), ...(flags.outcome ? { outcome: flags.outcome } : {}), ...(flags.action ? { action: flags.action } : {}) });
      show(flags, page, (p) => table(p.items, ['timestamp', 'actor_id', 'action', 'outcome', 'resource_id']));
    });
  apiCommand(audit, 'verify', "check the trail's hash chain; exits 125 if it is broken")
    .option('--tenant <id>', "the tenant's trail (operator key; a tenant key checks its own)")
    .action(async (flags: ApiFlags & { tenant?: string }) => {
      const result = await clientFor(flags).audit.verify(flags.tenant ? { tenant_id: flags.tenant } : {});
      show(flags, result, (r) => (r.ok ? `ok: ${r.count} events, chain intact` : `BROKEN: ${JSON.stringify(r)}`));
      if (!result.ok) throw new CliError('the audit chain does not verify', EXIT.api);
    });
}
