import type { Command } from 'commander';
import { registerExec } from './commands/exec.js';
import { registerRunner } from './commands/runner.js';
import { registerServer } from './commands/server.js';
import { registerUp } from './commands/up.js';

/**
 * The commands that run kiln itself (control plane, runner, local sandbox). They need the server, the
 * runner and its native helpers, so they come with a checkout of kiln, not with the packed CLI.
 */
export function registerLocalCommands(program: Command): void {
  registerUp(program);
  registerServer(program);
  registerRunner(program);
  registerExec(program);
}
