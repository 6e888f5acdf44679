import { spawn } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { spawnViaSpawner, type LaunchRequest } from './spawner-client.js';

export type { LaunchRequest, StdioChoice } from './spawner-client.js';

/**
 * A started helper process (kiln-launch): what supervise() and the workspace unmounter use of it.
 * Both ChildProcess (fallback) and SpawnedProcess (kiln-spawner) fit.
 */
export interface LaunchedProcess extends EventEmitter {
  /** One stream per 'pipe' fd of the request, null for the others. */
  readonly stdio: readonly (Duplex | null | undefined)[];
  /** The host pid, once known (kiln-spawner says it in its own message, possibly after stream data). */
  readonly pid?: number | undefined;
  kill(signal?: NodeJS.Signals): boolean;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'spawn', listener: () => void): this;
}

/**
 * Whether launches go through kiln-spawner (the default) or child_process.spawn (`KILN_SPAWNER=0`).
 * spawn() forks all of Node, blocking its main thread for milliseconds at a runner's size; the spawner
 * is a small separate process that forks instead (native/spawner/kiln-spawner.c).
 */
export function spawnerEnabled(): boolean {
  return process.env.KILN_SPAWNER !== '0';
}

/** Starts a helper with the given fds; rejects only if the spawner itself cannot be started. */
export async function launchProcess(request: LaunchRequest): Promise<LaunchedProcess> {
  if (spawnerEnabled()) return spawnViaSpawner(request);
  const child = spawn(request.path, [...request.args], { stdio: [...request.stdio], env: { ...request.env } });
  return child as unknown as LaunchedProcess;
}

interface HelperResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Set when the helper could not be started or its launcher was lost (no exit status). */
  error?: string;
}

/**
 * Runs an idempotent helper (kiln-launch umount) to completion with no stdin and stdout, collecting
 * stderr (up to `maxStderrBytes`). A run lost with the spawner (it died: no exit status) is tried once
 * more, through the restarted spawner.
 */
export async function runHelper(path: string, args: readonly string[], maxStderrBytes = 64 * 1024): Promise<HelperResult> {
  const first = await runHelperOnce(path, args, maxStderrBytes);
  if (first.error === undefined || first.code !== null || first.signal !== null) return first;
  return runHelperOnce(path, args, maxStderrBytes);
}

async function runHelperOnce(path: string, args: readonly string[], maxStderrBytes: number): Promise<HelperResult> {
  const child = await launchProcess({ path, args, env: {}, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve) => {
    let stderr = '';
    let error: string | undefined;
    child.stdio[2]?.on('data', (chunk: Buffer) => {
      if (stderr.length < maxStderrBytes) stderr += chunk.toString('utf8');
    });
    child.on('error', (err) => (error = err.message));
    child.on('close', (code, signal) => resolve({ code, signal, stderr, ...(error !== undefined ? { error } : {}) }));
  });
}
