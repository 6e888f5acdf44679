import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { constants } from 'node:os';
import type { Command } from 'commander';
import { addLimitFlags, localLimits, type LimitFlags } from '../limit-flags.js';
import { BubblewrapDriver, buildOneShotSpec, canonicalLanguage, LANGUAGES, type RunResult } from '@kiln/runner';

type ExecOptions = LimitFlags & {
  language?: string;
  json?: boolean;
  stdin?: string;
};

/** The exit code `kiln exec` ends with: the program's own, 128+signal when killed, 1 when it never ran. */
export function execExitCode(result: RunResult): number {
  if (result.exit_status.code !== null) return result.exit_status.code;
  const signal = result.exit_status.signal as keyof typeof constants.signals | null;
  if (signal && constants.signals[signal] !== undefined) return 128 + constants.signals[signal];
  return result.verdict === 'ok' ? 0 : 1;
}

/** The catalog's language names, each once (a language may have several toolchains). */
const KNOWN = [...new Set(LANGUAGES.map((l) => l.name))].join(', ');

function languageOf(file: string, given?: string): string {
  if (given) {
    const name = canonicalLanguage(given);
    if (!name) throw new Error(`unknown language "${given}"; known: ${KNOWN}`);
    return name;
  }
  const byExt = LANGUAGES.find((l) => l.extensions.includes(extname(file)))?.name;
  if (!byExt) throw new Error(`cannot tell the language of ${file}: pass --language`);
  return byExt;
}

async function execFile(file: string, args: string[], opts: ExecOptions): Promise<void> {
  const language = languageOf(file, opts.language);
  const limits = localLimits(opts);
  if (process.getuid?.() !== 0) {
    throw new Error('kiln exec needs root: it creates cgroups and runs each sandbox under its own uid');
  }
  const code = await readFile(file).catch(() => {
    throw new Error(`cannot read ${file}`);
  });
  let stdin: Buffer | undefined;
  if (opts.stdin === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    stdin = Buffer.concat(chunks);
  } else if (opts.stdin) {
    stdin = await readFile(opts.stdin).catch(() => {
      throw new Error(`cannot read ${opts.stdin}`);
    });
  }

  const driver = new BubblewrapDriver();
  const controller = new AbortController();
  const cancel = () => controller.abort();
  process.once('SIGINT', cancel);
  process.once('SIGTERM', cancel);
  const spec = buildOneShotSpec(
    { language, files: [{ path: basename(file), content: code.toString('base64'), encoding: 'base64' }], entrypoint: basename(file), args, ...(stdin ? { stdin } : {}) },
    limits,
    {
      signal: controller.signal,
      collect: [],
      // Stream as it comes unless the whole result is printed as JSON at the end.
      ...(opts.json ? {} : { onStdout: (d: Buffer) => process.stdout.write(d), onStderr: (d: Buffer) => process.stderr.write(d) }),
    },
  );
  const result = await driver.run(spec);
  // Nothing of the sandbox may outlive the command: wait for its cgroups, mount and uid to go.
  await driver.drain();
  process.off('SIGINT', cancel);
  process.off('SIGTERM', cancel);

  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({
        language,
        verdict: result.verdict,
        exit_status: result.exit_status,
        resource_usage: result.resource_usage,
        stdout: result.stdout.toString('utf8'),
        stderr: result.stderr.toString('utf8'),
        output_truncated: result.output_truncated,
        ...(result.error ? { error: result.error } : {}),
      })}\n`,
    );
  } else if (result.verdict !== 'ok' && result.verdict !== 'runtime_error') {
    process.stderr.write(`kiln: ${result.verdict}${result.error ? `: ${result.error}` : ''}\n`);
  }
  process.exitCode = execExitCode(result);
}

export function registerExec(program: Command): void {
  const cmd = program
    .command('exec')
    .description('run FILE in a local sandbox without the control plane (needs root); exits with its code')
    .argument('<file>', 'the program to run')
    .argument('[args...]', 'arguments for the program (after --)')
    .option('--language <language>', `the language or an alias (default: from the extension): ${KNOWN}`)
    .option('--json', 'print the whole result as JSON: verdict, exit_status, resource_usage, stdout, stderr')
    .option('--stdin <file>', 'a file to send as standard input (`-` for this process\'s standard input)')
    .showHelpAfterError(false);
  addLimitFlags(cmd, 'default-policy');
  cmd.action(async (file: string, args: string[], opts: ExecOptions) => {
    await execFile(file, args, opts);
  });
}
