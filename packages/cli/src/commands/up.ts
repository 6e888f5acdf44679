import type { Command } from 'commander';

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('(not built yet)')
    .action(() => {
      throw new Error('`kiln up` is not built yet');
    });
}
