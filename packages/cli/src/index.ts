import { Command } from 'commander';
import { registerExec } from './commands/exec.js';
import { registerRun } from './commands/run.js';
import { registerRunner } from './commands/runner.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerShell } from './commands/shell.js';
import { registerServer } from './commands/server.js';
import { registerUp } from './commands/up.js';

/** Builds the `kiln` command; each subcommand lives in its own module under commands/. */
export function buildProgram(): Command {
  const program = new Command('kiln')
    .description('kiln: sandboxed code execution for AI agents')
    .showHelpAfterError('(run `kiln --help` for the commands)')
    .configureOutput({ outputError: (str, write) => write(`kiln: ${str.replace(/^error: /, '')}`) });
  registerUp(program);
  registerServer(program);
  registerRunner(program);
  registerExec(program);
  registerRun(program);
  registerSandbox(program);
  registerShell(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
