import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Command } from 'commander';
import { CommandExitError, Sandbox } from '@kiln/sdk';

interface ClientOpts {
  url?: string;
  apiKey?: string;
}

function clientOptions(opts: ClientOpts) {
  if (!process.env.KILN_API_KEY && !opts.apiKey) throw new Error('no API key: set KILN_API_KEY or pass --api-key');
  return { ...(opts.url ? { url: opts.url } : {}), ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) };
}

/** `ID:path` names a file in a sandbox; anything else is a local path. */
export function parseCpTarget(target: string): { sandboxId: string; path: string } | undefined {
  const match = /^(ses_[0-9a-hjkmnp-tv-z]{26}):(.+)$/.exec(target);
  return match ? { sandboxId: match[1]!, path: match[2]! } : undefined;
}

function withClient(command: Command): Command {
  return command.option('--url <url>', 'the control plane URL (KILN_URL)').option('--api-key <key>', 'a tenant or agent key (KILN_API_KEY)');
}

/** `kiln sandbox create | list | kill | exec | cp`: sessions from a terminal. */
export function registerSandbox(program: Command): void {
  const sandbox = program.command('sandbox').description('persistent sandboxes (sessions): create, list, kill, exec, cp');
  withClient(sandbox.command('create').description('create a sandbox; prints its id'))
    .option('--timeout <seconds>', 'how long it lives without a keepalive', (v) => Number(v))
    .option('--policy <id>', 'the policy to pin')
    .option('--env <NAME=value...>', 'environment variables')
    .action(async (opts: ClientOpts & { timeout?: number; policy?: string; env?: string[] }) => {
      const envs = Object.fromEntries((opts.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      const sbx = await Sandbox.create({
        ...clientOptions(opts),
        ...(opts.timeout ? { timeoutMs: opts.timeout * 1000 } : {}),
        ...(opts.policy ? { policyId: opts.policy } : {}),
        ...(opts.env ? { envs } : {}),
      });
      process.stdout.write(`${sbx.sandboxId}\n`);
    });
  withClient(sandbox.command('list').description('list active sandboxes')).action(async (opts: ClientOpts) => {
    for (const s of await Sandbox.list(clientOptions(opts))) process.stdout.write(`${s.id}\t${s.status}\t${s.expires_at}\t${s.agent_id ?? '-'}\n`);
  });
  withClient(sandbox.command('kill <id>').description('end a sandbox (idempotent)')).action(async (id: string, opts: ClientOpts) => {
    await (await Sandbox.connect(id, clientOptions(opts))).kill();
  });
  withClient(sandbox.command('exec <id> <cmd...>').description('run a command in a sandbox: streams its output, exits with its code'))
    .option('--cwd <dir>', 'the working directory')
    .action(async (id: string, cmd: string[], opts: ClientOpts & { cwd?: string }) => {
      const sbx = await Sandbox.connect(id, clientOptions(opts));
      try {
        await sbx.commands.run(cmd, {
          onStdout: (d) => process.stdout.write(d),
          onStderr: (d) => process.stderr.write(d),
          ...(opts.cwd ? { cwd: opts.cwd } : {}),
        });
      } catch (err) {
        if (!(err instanceof CommandExitError)) throw err;
        process.exitCode = err.exitCode > 0 && err.exitCode < 256 ? err.exitCode : 1;
      }
    });
  withClient(sandbox.command('cp <from> <to>').description('copy a file in or out: ID:path names a file in a sandbox')).action(
    async (from: string, to: string, opts: ClientOpts) => {
      const source = parseCpTarget(from);
      const target = parseCpTarget(to);
      if ((source === undefined) === (target === undefined)) throw new Error('one side must be ID:path in a sandbox, the other a local path');
      if (source) {
        const sbx = await Sandbox.connect(source.sandboxId, clientOptions(opts));
        await pipeline(Readable.fromWeb((await sbx.files.read(source.path, { format: 'stream' })) as WebReadableStream<Uint8Array>), createWriteStream(to));
      } else {
        const sbx = await Sandbox.connect(target!.sandboxId, clientOptions(opts));
        await sbx.files.write(target!.path, createReadStream(from));
      }
    },
  );
}
