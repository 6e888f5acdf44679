import type { Session, SessionStep } from '@kiln/core';
import { CommandExitError, KilnClient, Sandbox, type CommandResult, type KilnClientOptions } from '@kiln/sdk';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { asText, readAtMost } from '../bounded-read.js';
import { ProgressReporter } from '../progress.js';
import { capText, guarded, outcome, toolResult } from '../results.js';
import { idSchema } from './ids.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** read_file answers at most this many bytes by default, and never more than READ_MAX_BYTES. */
export const READ_DEFAULT_BYTES = 64 * KiB;
export const READ_MAX_BYTES = 1 * MiB;
/** list_files answers at most this many entries. */
export const LIST_MAX_ENTRIES = 500;

const sandboxId = idSchema('ses', 'the sandbox id create_sandbox answered');
const pathSchema = (what: string) => z.string().min(1).max(1024).describe(`${what}, relative to /workspace (or absolute under /workspace)`);
const envSchema = z.record(z.string().max(128), z.string().max(32 * KiB));

// Built once per process (zod compiles a schema on its first use; `/mcp` builds a server per request).
const createSandboxInput = z.object({
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional().describe('how long it lives; default and most: the policy\'s sessions.max_ttl_seconds'),
  env: envSchema.optional().describe('environment variables every command sees'),
  metadata: z.record(z.string().min(1).max(64), z.string().max(1024)).optional().describe('labels of your own (at most 32)'),
  policy_id: z.string().max(64).optional().describe('the policy to run under; default the tenant\'s "default" policy'),
  agent_id: z.string().max(64).optional().describe('with a tenant admin key: the agent the sandbox is for'),
  zone: z.string().min(1).max(64).optional().describe('the runner zone to place it in'),
});
const runCommandInput = z.object({
  sandbox_id: sandboxId,
  command: z
    .union([z.string().min(1).max(64 * KiB), z.array(z.string().max(64 * KiB)).min(1).max(1024)])
    .describe('e.g. "pip list | head" or ["python3", "main.py"]'),
  stdin: z.string().max(1 * MiB).optional().describe('text given on standard input (then end of file)'),
  cwd: z.string().min(1).max(1024).optional().describe('working directory; default /workspace'),
  env: envSchema.optional().describe('extra environment variables for this command'),
  timeout_ms: z.number().int().min(1).max(24 * 3600 * 1000).optional().describe('kill it after this long; default the policy\'s limits.wall_time_ms'),
  background: z.boolean().optional().describe('answer at once and leave the command running'),
});
const writeFileInput = z.object({
  sandbox_id: sandboxId,
  path: pathSchema('the file'),
  content: z.string().max(8 * MiB).describe('the content: text, or base64 with encoding "base64"'),
  encoding: z.enum(['utf8', 'base64']).optional().describe('how `content` is encoded; default "utf8"'),
});
const readFileInput = z.object({
  sandbox_id: sandboxId,
  path: pathSchema('the file'),
  max_bytes: z.number().int().min(1).max(READ_MAX_BYTES).optional().describe(`how many bytes to return at most; default ${READ_DEFAULT_BYTES}`),
});
const listFilesInput = z.object({ sandbox_id: sandboxId, path: pathSchema('the folder').optional() });
const killSandboxInput = z.object({ sandbox_id: sandboxId });

function sandboxSummary(s: Session) {
  return {
    sandbox_id: s.id,
    status: s.status,
    reason: s.reason,
    expires_at: s.expires_at,
    ttl_seconds: s.ttl_seconds,
    idle_timeout_seconds: s.idle_timeout_seconds,
    policy_id: s.policy_id,
    agent_id: s.agent_id,
    created_at: s.created_at,
  };
}

function stepSummary(step: SessionStep) {
  const stdout = capText(step.stdout);
  const stderr = capText(step.stderr);
  const cut = stdout.truncated || stderr.truncated;
  return {
    sequence: step.sequence,
    ...outcome(step),
    stdout: stdout.text,
    stderr: stderr.text,
    stdout_truncated: stdout.truncated,
    stderr_truncated: stderr.truncated,
    ...(step.error ? { error: step.error } : {}),
    ...(cut ? { note: 'output is longer than shown: redirect it to a file in the command (e.g. `cmd > out.txt 2>&1`) and read it with read_file' } : {}),
  };
}

/**
 * Session tools: a sandbox that lives across calls. Each goes through the SDK's E2B-shaped `Sandbox`
 * (so the MCP face and the SDK do the same thing), with the caller's own key.
 */
export function registerSandboxTools(server: McpServer, client: KilnClient, options: KilnClientOptions): void {
  const connect = (id: string) => Sandbox.connect(id, options);

  server.registerTool(
    'create_sandbox',
    {
      title: 'Create a sandbox',
      description:
        'Starts a persistent sandbox (a kiln session): a Linux workspace at /workspace that keeps its files and processes ' +
        'across run_command, write_file, read_file and list_files calls until kill_sandbox, its TTL, or its idle timeout. ' +
        'Answers its sandbox_id and expires_at.',
      inputSchema: createSandboxInput,
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
    },
    (args) => guarded(async () => toolResult(sandboxSummary(await client.request<Session>('POST', '/v1/sessions', { body: args, timeoutMs: 60_000 })))),
  );

  server.registerTool(
    'run_command',
    {
      title: 'Run a command in a sandbox',
      description:
        'Runs a command in a sandbox from create_sandbox (a string runs under /bin/sh -c in /workspace; an array is the argv) ' +
        'and returns its exit code, verdict, stdout and stderr (capped inline; redirect long output to a file and read_file it). ' +
        'A non-zero exit is a normal result, not an error. `background: true` answers at once with the command\'s sequence ' +
        'and leaves it running (a server, a watcher). Sends progress notifications while it runs when the request has a progressToken.',
      inputSchema: runCommandInput,
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
    },
    ({ sandbox_id, command, stdin, cwd, env, timeout_ms, background }, extra) =>
      guarded(async () => {
        const sandbox = await connect(sandbox_id);
        const common = { ...(stdin !== undefined ? { stdin } : {}), ...(cwd ? { cwd } : {}), ...(env ? { envs: env } : {}), ...(timeout_ms ? { timeoutMs: timeout_ms } : {}) };
        if (background) {
          const handle = await sandbox.commands.run(command, { ...common, background: true });
          return toolResult({ sequence: handle.sequence, status: 'running', note: 'the command goes on in the background; its output is not returned here' });
        }
        const progress = new ProgressReporter(extra);
        // A command that exits non-zero is an answer, not a failure of the tool.
        const ended = (err: unknown): CommandResult => {
          if (err instanceof CommandExitError) return err.result;
          throw err;
        };
        if (!progress.enabled) return toolResult(stepSummary((await sandbox.commands.run(command, common).catch(ended)).step));
        // With progress: the command is followed as it runs (its output paces the notifications), gets
        // end of file after its stdin as a foreground one would, and is killed if the call is cancelled.
        progress.start('running');
        const onOutput = (d: string) => progress.output(d.length);
        const handle = await sandbox.commands.run(command, { ...common, background: true, onStdout: onOutput, onStderr: onOutput });
        progress.status(`command ${handle.sequence} running`);
        const kill = () => void handle.kill().catch(() => undefined);
        extra.signal.addEventListener('abort', kill, { once: true });
        try {
          await handle.sendStdin('', { eof: true }).catch(() => undefined);
          return toolResult(stepSummary((await handle.wait().catch(ended)).step));
        } finally {
          extra.signal.removeEventListener('abort', kill);
          progress.stop();
        }
      }),
  );

  server.registerTool(
    'write_file',
    {
      title: 'Write a file in a sandbox',
      description: 'Writes (creates or replaces) a file in a sandbox\'s /workspace, making parent folders as needed. Answers the path and size.',
      inputSchema: writeFileInput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    ({ sandbox_id, path, content, encoding }) =>
      guarded(async () => {
        const sandbox = await connect(sandbox_id);
        const data = encoding === 'base64' ? new Uint8Array(Buffer.from(content, 'base64')) : content;
        return toolResult(await sandbox.files.write(path, data));
      }),
  );

  server.registerTool(
    'read_file',
    {
      title: 'Read a file in a sandbox',
      description:
        `Reads a file from a sandbox's /workspace: text inline, other content as base64. At most \`max_bytes\` (default ${READ_DEFAULT_BYTES}, ` +
        `most ${READ_MAX_BYTES}) are returned; \`truncated\` says when the file is longer.`,
      inputSchema: readFileInput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ sandbox_id, path, max_bytes }) =>
      guarded(async () => {
        const sandbox = await connect(sandbox_id);
        const response = await sandbox.client.requestRaw('GET', `${sandbox.path}/files`, { query: { path: path.replace(/^\/workspace\/?/, '') }, accept: '*/*', timeoutMs: 60_000 });
        const { bytes, truncated } = await readAtMost(response.body, max_bytes ?? READ_DEFAULT_BYTES);
        const text = asText(bytes, truncated);
        return toolResult({
          path,
          encoding: text === null ? 'base64' : 'utf8',
          content: text ?? Buffer.from(bytes).toString('base64'),
          bytes_returned: bytes.byteLength,
          truncated,
          ...(truncated ? { note: `only the first ${bytes.byteLength} bytes are shown; raise max_bytes (at most ${READ_MAX_BYTES}) or read a part with run_command (e.g. tail, head, sed -n)` } : {}),
        });
      }),
  );

  server.registerTool(
    'list_files',
    {
      title: 'List files in a sandbox',
      description: `Lists a folder of a sandbox's /workspace (default the workspace itself): name, path, type, size_bytes, modified_at; at most ${LIST_MAX_ENTRIES} entries.`,
      inputSchema: listFilesInput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ sandbox_id, path }) =>
      guarded(async () => {
        const sandbox = await connect(sandbox_id);
        const entries = await sandbox.files.list(path ?? '');
        const shown = entries.slice(0, LIST_MAX_ENTRIES);
        return toolResult({
          entries: shown.map((e) => ({ name: e.name, path: e.path, type: e.type, size_bytes: e.size_bytes, modified_at: e.modified_at })),
          truncated: entries.length > shown.length,
          ...(entries.length > shown.length ? { note: `${entries.length} entries, the first ${LIST_MAX_ENTRIES} shown; list a subfolder or use run_command (find, ls)` } : {}),
        });
      }),
  );

  server.registerTool(
    'kill_sandbox',
    {
      title: 'Kill a sandbox',
      description: 'Ends a sandbox: its processes are killed and its files deleted. Killing one already ended answers it as it is.',
      inputSchema: killSandboxInput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    ({ sandbox_id }) =>
      guarded(async () => toolResult(sandboxSummary(await client.request<Session>('DELETE', `/v1/sessions/${encodeURIComponent(sandbox_id)}`)))),
  );
}
