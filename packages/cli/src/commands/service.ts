import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import type { Service } from '@kiln/core';
import type { KilnClient, ServiceCreateInput } from '@kiln/sdk';
import { apiCommand, clientFor, fields, pageQuery, show, table, wholeNumber, withPaging, type ApiFlags } from '../context.js';

interface StartFlags extends ApiFlags {
  port: number;
  file?: string[];
  env?: string[];
  ttl?: number;
  restart?: 'never' | 'on-failure';
  readinessPath?: string;
  readinessTimeoutMs?: number;
  public?: boolean;
  policy?: string;
  wait: boolean;
}

function summary(s: Service): string {
  return fields({ id: s.id, status: s.status, reason: s.reason ?? undefined, port: s.port, restarts: s.restarts, proxy_url: s.proxy_url, expires_at: s.expires_at });
}

/** Polls until the service runs (or ends): the answer of `start` is `starting`. */
async function untilRunning(client: KilnClient, id: string, timeoutMs: number): Promise<Service> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await client.services.get(id);
    if (s.status !== 'starting' || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `kiln service start | list | stop | logs | url`: long-running servers behind the proxy (issue 9). */
export function registerService(program: Command): void {
  const service = program.command('service').description('services behind a proxy URL through the API (KILN_URL, KILN_API_KEY)');

  apiCommand(service, 'start', 'start COMMAND as a service listening on --port; waits until it runs and prints it')
    .argument('<command...>', 'the command (after --), e.g. -- python3 -m http.server 8000')
    .requiredOption('--port <port>', 'the port it listens on inside the sandbox', wholeNumber)
    .option('--file <path...>', 'local files to put in /workspace (by their base name)')
    .option('--env <NAME=value...>', 'environment variables')
    .option('--ttl <seconds>', 'how long it may run (default: the policy maximum)', wholeNumber)
    .option('--restart <policy>', 'never | on-failure', 'never')
    .option('--readiness-path <path>', 'running once this path answers 2xx (default: once the port accepts)')
    .option('--readiness-timeout-ms <ms>', 'terminated when not ready within this', wholeNumber)
    .option('--public', 'open to anyone with the URL (where the policy allows it)')
    .option('--policy <id>', 'the policy to pin')
    .option('--no-wait', 'print it at once, starting')
    .action(async (command: string[], flags: StartFlags) => {
      const client = clientFor(flags);
      const files = await Promise.all(
        (flags.file ?? []).map(async (f) => ({ path: basename(f), content: (await readFile(f)).toString('base64'), encoding: 'base64' as const })),
      );
      const env = Object.fromEntries((flags.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      const request: ServiceCreateInput = {
        command,
        port: flags.port,
        ...(files.length ? { files } : {}),
        ...(flags.env ? { env } : {}),
        ...(flags.ttl !== undefined ? { ttl_seconds: flags.ttl } : {}),
        ...(flags.restart ? { restart: flags.restart } : {}),
        ...(flags.readinessPath || flags.readinessTimeoutMs
          ? { readiness: { ...(flags.readinessPath ? { path: flags.readinessPath } : {}), timeout_ms: flags.readinessTimeoutMs ?? 30_000 } }
          : {}),
        ...(flags.public ? { public: true } : {}),
        ...(flags.policy ? { policy_id: flags.policy } : {}),
      };
      const created = await client.services.create(request);
      const s = flags.wait ? await untilRunning(client, created.id, (request.readiness?.timeout_ms ?? 30_000) + 5000) : created;
      show(flags, s, summary);
      if (flags.wait && s.status !== 'running') process.exitCode = 1;
    });

  withPaging(apiCommand(service, 'list', 'list services, newest first'))
    .option('--status <status>', 'only this status (starting, running, stopped, terminated)')
    .action(async (flags: ApiFlags & { status?: Service['status']; limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).services.list({ ...pageQuery(flags), ...(flags.status ? { status: flags.status } : {}) });
      show(flags, page, (p) => table(p.items as unknown as Record<string, unknown>[], ['id', 'status', 'reason', 'port', 'created_at', 'proxy_url']));
    });

  apiCommand(service, 'stop', 'stop a service and destroy its sandbox')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).services.stop(id), summary));

  apiCommand(service, 'logs', "print a service's stdout and stderr from the start, following until it ends")
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => {
      for await (const e of clientFor(flags).services.logs(id)) {
        if (e.type === 'output') (e.chunk.stream === 'stderr' ? process.stderr : process.stdout).write(e.chunk.data);
        else if (e.type === 'truncated') process.stderr.write('kiln: the beginning of the log was dropped (the runner keeps the last MiB)\n');
        else process.stderr.write(`kiln: service ${id} ended (${e.state}${e.reason ? `, ${e.reason}` : ''})\n`);
      }
    });

  apiCommand(service, 'url', "print a service's proxy URL; with --token, a URL with a scoped token to open in a browser")
    .argument('<id>')
    .option('--token', 'make a token that opens this service alone and print the URL that carries it')
    .option('--ttl <seconds>', 'how long the token lives', wholeNumber, 3600)
    .action(async (id: string, flags: ApiFlags & { token?: boolean; ttl: number }) => {
      const client = clientFor(flags);
      if (!flags.token) return show(flags, await client.services.get(id), (s) => s.proxy_url);
      show(flags, await client.services.createToken(id, { ttl_seconds: flags.ttl }), (t) => `${t.url}\n`);
    });
}
