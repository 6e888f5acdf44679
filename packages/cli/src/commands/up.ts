import type { Command } from 'commander';
import { addControlPlaneOptions, runControlPlane, type ControlPlaneFlags } from './server.js';

/** `kiln up`: everything on one machine. For now the control plane; the local runner joins later. */
export function registerUp(program: Command): void {
  addControlPlaneOptions(
    program.command('up').description('start kiln on this machine with embedded defaults (SQLite, local disk)'),
  ).action(async (flags: ControlPlaneFlags) => {
    await runControlPlane(flags, 'up');
  });
}
