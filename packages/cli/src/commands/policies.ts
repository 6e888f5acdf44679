import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { RulesetInput } from '@kiln/core';
import { apiCommand, CliError, clientFor, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

/** A ruleset from a JSON file (`-` for stdin): a bare ruleset or a policy answer with `ruleset`. */
async function readRuleset(file: string): Promise<RulesetInput> {
  const text = file === '-' ? await readAll() : await readFile(file, 'utf8').catch(() => {
    throw new CliError(`cannot read ${file}`);
  });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (value && typeof value === 'object' && 'ruleset' in value) value = (value as { ruleset: unknown }).ruleset;
  return value as RulesetInput;
}

async function readAll(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerPolicies(program: Command): void {
  const policies = program.command('policies').description("a tenant's versioned policies");
  withPaging(apiCommand(policies, 'list', 'list policies')).action(async (flags: ApiFlags & { limit?: number; cursor?: string }) => {
    const page = await clientFor(flags).policies.list(pageQuery(flags));
    show(flags, page, (p) => table(p.items, ['id', 'name', 'version', 'updated_at']));
  });
  apiCommand(policies, 'get', 'show a policy and its current ruleset (--json: the JSON `publish --file` takes)')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).policies.get(id), fields));
  apiCommand(policies, 'create', 'create a policy (version 1: the default ruleset, or --file)')
    .argument('<name>')
    .option('--file <file>', 'the ruleset as JSON (`-`: standard input)')
    .action(async (name: string, flags: ApiFlags & { file?: string }) => {
      const ruleset = flags.file ? await readRuleset(flags.file) : undefined;
      show(flags, await clientFor(flags).policies.create({ name, ...(ruleset ? { ruleset } : {}) }), fields);
    });
  apiCommand(policies, 'publish', 'publish a new version of a policy from a ruleset file')
    .argument('<id>')
    .requiredOption('--file <file>', 'the ruleset as JSON (`-`: standard input); `kiln policies get ID --json` gives one to edit')
    .option('--expected-version <n>', 'refuse if the current version is not N (default: the current one, read first)')
    .action(async (id: string, flags: ApiFlags & { file: string; expectedVersion?: string }) => {
      const client = clientFor(flags);
      const ruleset = await readRuleset(flags.file);
      const expected = flags.expectedVersion !== undefined ? Number(flags.expectedVersion) : (await client.policies.get(id)).version;
      if (!Number.isSafeInteger(expected)) throw new CliError('--expected-version must be a whole number');
      show(flags, await client.policies.publish(id, { ruleset, expected_version: expected }), (p) => `${p.id} ${p.name} version ${p.version}`);
    });
  withPaging(apiCommand(policies, 'versions', "list a policy's published versions"))
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags & { limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).policies.versions(id, pageQuery(flags));
      show(flags, page, (p) => table(p.items, ['version', 'created_at']));
    });
}
