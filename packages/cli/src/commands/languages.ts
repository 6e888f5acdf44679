import type { Command } from 'commander';
import { apiCommand, clientFor, show, table, type ApiFlags } from '../context.js';

export function registerLanguages(program: Command): void {
  apiCommand(program, 'languages', 'the languages the fleet offers').action(async (flags: ApiFlags) => {
    const answer = await clientFor(flags).languages();
    show(flags, answer, (a) =>
      table(
        a.items.map((l) => ({ ...l, versions: l.versions.join(', '), aliases: l.aliases.join(', '), libraries: l.libraries.join(', ') })),
        ['name', 'versions', 'aliases', 'runners', 'libraries'],
      ),
    );
  });
}
