import { Command } from 'commander';
import { registerAgents } from './commands/agents.js';
import { registerArtifacts } from './commands/artifacts.js';
import { registerAudit } from './commands/audit.js';
import { registerJobs } from './commands/jobs.js';
import { registerKeys } from './commands/keys.js';
import { registerLanguages } from './commands/languages.js';
import { registerMcp } from './commands/mcp.js';
import { registerPolicies } from './commands/policies.js';
import { registerRun } from './commands/run.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerService } from './commands/service.js';
import { registerShell } from './commands/shell.js';
import { registerTenants } from './commands/tenants.js';
import { registerWorkflow } from './commands/workflow.js';
import { CliError, describeFailure, EXIT } from './context.js';
import { VERSION } from './version.js';

/** The local commands, when this install has them (a checkout does; the packed CLI does not). */
async function localCommands(): Promise<((program: Command) => void) | undefined> {
  try {
    return (await import('./local.js')).registerLocalCommands;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

/** Stand-ins for `kiln up` & co. in the packed CLI: say where they are instead of "unknown command". */
function registerLocalStandIns(program: Command): void {
  for (const name of ['up', 'server', 'runner', 'exec']) {
    program
      .command(name, { hidden: true })
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        throw new CliError(
          `kiln ${name} runs kiln itself and comes with a checkout of kiln (it needs the server, the runner and their native helpers): ` +
            'clone the repository, `bash scripts/setup.sh`, then `npx kiln ' + name + '` there; this CLI talks to a running kiln (set KILN_URL)',
          EXIT.usage,
        );
      });
  }
}

/**
 * Builds the `kiln` command; each command group lives in its own module under commands/ (API commands
 * take their flags from `apiCommand` in context.ts). `programArgs` are the words after `--`, for `run`.
 */
export async function buildProgram(programArgs: string[] = []): Promise<Command> {
  const program = new Command('kiln')
    .description('kiln: sandboxed code execution for AI agents')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run `kiln --help` for the commands)')
    .configureOutput({ outputError: (str, write) => write(`kiln: ${str.replace(/^error: /, '')}`) })
    // Usage errors exit with kiln's own code, never one a program could have returned.
    .exitOverride((err) => {
      if (err.exitCode === 0) process.exit(0);
      throw err;
    });
  const local = await localCommands();
  if (local) local(program);
  else registerLocalStandIns(program);
  registerRun(program, () => programArgs);
  registerJobs(program);
  registerArtifacts(program);
  registerTenants(program);
  registerAgents(program);
  registerKeys(program);
  registerPolicies(program);
  registerAudit(program);
  registerLanguages(program);
  registerWorkflow(program);
  registerSandbox(program);
  registerService(program);
  registerShell(program);
  registerMcp(program);
  return program;
}

/** Runs the CLI; a failure prints what failed and what to do, and sets kiln's own exit code. */
export async function main(argv: string[]): Promise<void> {
  // `kiln run FILE -- ARGS`: the words after `--` are the program's, whatever they look like.
  const dashes = argv[2] === 'run' ? argv.indexOf('--', 3) : -1;
  const programArgs = dashes >= 0 ? argv.slice(dashes + 1) : [];
  try {
    await (await buildProgram(programArgs)).parseAsync(dashes >= 0 ? argv.slice(0, dashes) : argv);
  } catch (err) {
    const { message, exitCode } = describeFailure(err);
    if (message) process.stderr.write(`kiln: ${message}\n`);
    process.exitCode = exitCode;
  }
}
