import type { Command } from 'commander';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('(not built yet)')
    .action(() => {
      throw new Error('`kiln run` is not built yet');
    });
}
