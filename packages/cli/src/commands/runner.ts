import type { Command } from 'commander';

export function registerRunner(program: Command): void {
  program
    .command('runner')
    .description('(not built yet)')
    .action(() => {
      throw new Error('`kiln runner` is not built yet');
    });
}
