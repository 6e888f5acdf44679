import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { apiCommand, clientFor, CliError, EXIT, fields, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';

export function registerArtifacts(program: Command): void {
  const artifacts = program.command('artifacts').description("list and download jobs' artifacts");
  withPaging(apiCommand(artifacts, 'list', 'list artifacts (of one job with --job)'))
    .option('--job <id>', "only this job's artifacts")
    .action(async (flags: ApiFlags & { job?: string; limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).artifacts.list({ ...pageQuery(flags), ...(flags.job ? { owner_type: 'job', owner_id: flags.job } : {}) });
      show(flags, page, (p) => table(p.items, ['id', 'name', 'size_bytes', 'owner_id', 'created_at']) + (p.next_cursor ? `(more: --cursor ${p.next_cursor})\n` : ''));
    });
  apiCommand(artifacts, 'get', "download an artifact's content to stdout or -o FILE (--json: its metadata)")
    .argument('<id>')
    .option('-o, --output <file>', 'write the content to FILE')
    .action(async (id: string, flags: ApiFlags & { output?: string }) => {
      const client = clientFor(flags);
      if (flags.json) return show(flags, await client.artifacts.get(id), fields);
      const { bytes, checksum } = await client.artifacts.download(id);
      const actual = `sha256:${await sha256Hex(bytes)}`;
      if (checksum && checksum !== actual) throw new CliError(`artifact ${id}: the content does not match its checksum (${checksum}); download it again`, EXIT.api);
      if (flags.output) await writeFile(flags.output, bytes);
      else process.stdout.write(bytes);
    });
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}
