import type { Command } from 'commander';

export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('(not built yet)')
    .action(() => {
      throw new Error('`kiln exec` is not built yet');
    });
}
