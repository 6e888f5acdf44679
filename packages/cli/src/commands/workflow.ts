import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import type { CreateWorkflowRequest, Workflow, WorkflowStep } from '@kiln/core';
import { apiCommand, clientFor, pageQuery, show, table, withPaging, type ApiFlags } from '../context.js';
import { parse as parseYaml } from 'yaml';

/**
 * `kiln workflow run FILE.yaml` and friends. The file has the shape of `POST /v1/workflows` (YAML or
 * JSON); a step may name its program with `code_file: clean.py`, and a file with `{ path, file }`
 * instead of `content`: both are read from beside the workflow file, so a pipeline lives in one folder.
 */

interface FileRef {
  path: string;
  file?: string;
  content?: string;
  encoding?: 'utf8' | 'base64';
}

/** Reads a file beside the workflow file: UTF-8 text as is, anything else as base64. */
async function readBeside(base: string, name: string): Promise<{ content: string; encoding: 'utf8' | 'base64' }> {
  const bytes = await readFile(resolve(base, name)).catch(() => {
    throw new Error(`cannot read ${name} (named in the workflow, looked for beside it in ${base})`);
  });
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? { content: text, encoding: 'utf8' } : { content: bytes.toString('base64'), encoding: 'base64' };
}

/** The request a workflow file describes, with every referenced file read in. */
export async function loadWorkflowFile(file: string): Promise<CreateWorkflowRequest> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw new Error(`cannot read ${file}`);
  });
  const parsed = (file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100 })) as unknown;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { steps?: unknown }).steps)) {
    throw new Error(`${file}: a workflow needs "steps", a list of steps`);
  }
  const base = dirname(resolve(file));
  const request = parsed as { steps: Record<string, unknown>[] };
  for (const step of request.steps) {
    if (typeof step.code_file === 'string') {
      step.code = (await readBeside(base, step.code_file)).content;
      delete step.code_file;
    }
    if (Array.isArray(step.files)) {
      step.files = await Promise.all(
        (step.files as FileRef[]).map(async (f) => {
          if (typeof f.file !== 'string') return f;
          const { content, encoding } = await readBeside(base, f.file);
          return { path: f.path, content, encoding };
        }),
      );
    }
  }
  return parsed as CreateWorkflowRequest;
}

function stepLine(step: WorkflowStep): string {
  return `[${step.sequence} ${step.name}] ${step.status}${step.job_id ? ` (job ${step.job_id})` : ''}${step.reason ? `: ${step.reason}` : ''}\n`;
}

function summary(w: Workflow): string {
  const lines = [`workflow ${w.id}${w.name ? ` (${w.name})` : ''}: ${w.status}${w.reason ? ` — ${w.reason}` : ''}`];
  for (const s of w.steps ?? []) lines.push(`  ${s.sequence}. ${s.name}: ${s.status}${s.job_id ? ` job ${s.job_id}` : ''}${s.reason ? ` — ${s.reason}` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** Prefixes every line of a step's output with the step's name, across chunks that split lines. */
export class LinePrefixer {
  private readonly atLineStart = new Map<string, boolean>();

  add(chunk: { step: string; stream: string; data: string }): string {
    const key = `${chunk.step}/${chunk.stream}`;
    let out = '';
    let start = this.atLineStart.get(key) ?? true;
    for (const piece of chunk.data.split(/(?<=\n)/)) {
      if (piece === '') continue;
      out += start ? `[${chunk.step}] ${piece}` : piece;
      start = piece.endsWith('\n');
    }
    this.atLineStart.set(key, start);
    return out;
  }
}

export function registerWorkflow(program: Command): void {
  const workflow = program.command('workflow').description('multi-step workflows through the API (KILN_URL, KILN_API_KEY)');

  apiCommand(workflow, 'run', 'submit FILE (YAML or JSON), stream each step and its output, exit non-zero unless it succeeds')
    .argument('<file>', 'the workflow file')
    .action(async (file: string, flags: ApiFlags) => {
      const client = clientFor(flags);
      const request = await loadWorkflowFile(file);
      const prefix = new LinePrefixer();
      const done = await client.workflows.run(request, {
        onCreated: (w) => process.stderr.write(`kiln: workflow ${w.id} submitted (${w.steps?.length ?? 0} steps)\n`),
        onStep: (s) => process.stderr.write(stepLine(s)),
        onOutput: (chunk) => (chunk.stream === 'stdout' ? process.stdout : process.stderr).write(prefix.add(chunk)),
      });
      if (flags.json) show(flags, done, summary);
      else process.stderr.write(summary(done));
      process.exitCode = done.status === 'succeeded' ? 0 : 1;
    });

  withPaging(apiCommand(workflow, 'list', 'list workflows, newest first'))
    .option('--status <status>', 'only this status')
    .action(async (flags: ApiFlags & { status?: string; limit?: number; cursor?: string }) => {
      const page = await clientFor(flags).workflows.list({ ...pageQuery(flags), ...(flags.status ? { status: flags.status } : {}) });
      show(flags, page, (p) => table(p.items as unknown as Record<string, unknown>[], ['id', 'status', 'created_at', 'name']));
    });

  apiCommand(workflow, 'get', 'show a workflow and its steps')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).workflows.get(id), summary));

  apiCommand(workflow, 'cancel', 'cancel a workflow (running steps are killed)')
    .argument('<id>')
    .action(async (id: string, flags: ApiFlags) => show(flags, await clientFor(flags).workflows.cancel(id), summary));
}
