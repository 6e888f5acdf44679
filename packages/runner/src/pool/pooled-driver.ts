import { KilnError, limitsSchema, parseOrThrow } from '@kiln/core';
import type { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import type { OneShotSpec, PersistentSpec, RunResult, SandboxDriver, SandboxHandle } from '../sandbox/driver.js';
import { collectInto, setupFailure } from '../sandbox/one-shot.js';
import { PersistentSandbox } from '../sandbox/persistent/persistent-sandbox.js';
import { refuseUnsafeFilePaths } from '../sandbox/workspace.js';
import type { SandboxShape } from './shape.js';
import { WarmPool, type WarmPoolOptions } from './warm-pool.js';

export type PooledDriverOptions = Omit<WarmPoolOptions, 'build'>;

/**
 * The bubblewrap driver with a warm pool in front: one-shot runs and persistent sandboxes (sessions,
 * services) both take a pre-built sandbox of their shape when one is ready, and build their own as
 * before when none is. A pooled sandbox serves one request and is destroyed after it, like a fresh one.
 */
export class PooledDriver implements SandboxDriver {
  readonly name = 'bubblewrap';
  readonly pool: WarmPool;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    readonly inner: BubblewrapDriver,
    options: PooledDriverOptions,
  ) {
    this.pool = new WarmPool({
      ...options,
      build: async (shape) => {
        const handle = await inner.start({ limits: shape.limits, loopback: shape.loopback });
        if (!(handle instanceof PersistentSandbox)) {
          await handle.destroy();
          throw new Error('the sandbox driver did not build a persistent sandbox');
        }
        return handle;
      },
    });
  }

  async run(spec: OneShotSpec): Promise<RunResult> {
    // What the pooled path cannot do goes the one-shot way: a compile step reporting on fd 3, a network,
    // an open stdin (the one-shot pipe gives its writer back-pressure; the init's socket does not).
    if (spec.reportsCompileStatus || (spec.network && spec.network.egress !== 'none') || spec.openStdin || spec.signal?.aborted) {
      return this.inner.run(spec);
    }
    // The same refusals as a one-shot run, before anything is taken.
    const limits = parseOrThrow(limitsSchema, spec.limits, 'limits');
    if (spec.command.length === 0) throw new KilnError('VALIDATION_FAILED', 'the command is empty', { field: 'command' });
    refuseUnsafeFilePaths(spec.files ?? []);
    const sandbox = this.pool.take({ limits, loopback: false });
    if (!sandbox) return this.inner.run(spec);
    try {
      return await runInPooled(sandbox, spec, limits.output_bytes);
    } finally {
      // Used once: destroyed after its one job, off the answer's path.
      this.track(sandbox.destroy());
    }
  }

  async start(spec: PersistentSpec): Promise<SandboxHandle> {
    const limits = parseOrThrow(limitsSchema, spec.limits, 'limits');
    const shape: SandboxShape = { limits, loopback: spec.loopback ?? true };
    if ((spec.network && spec.network.egress !== 'none') || !shape.loopback) return this.inner.start(spec);
    refuseUnsafeFilePaths(spec.files ?? []);
    const sandbox = this.pool.take(shape);
    if (!sandbox) return this.inner.start(spec);
    try {
      sandbox.workspace.writeFiles(spec.files ?? []);
      sandbox.useEnv(spec.env ?? {});
      return sandbox;
    } catch (err) {
      await sandbox.destroy();
      throw err;
    }
  }

  /** Closes the pool (every ready sandbox destroyed), then waits for every cleanup, the driver's included. */
  async drain(): Promise<void> {
    await this.pool.close();
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    await this.inner.drain();
  }

  private track(done: Promise<void>): void {
    const tracked = done.catch(() => {
      // a failed removal is reported by the inner driver's drain
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }
}

/** One job in a pre-built sandbox: its files placed, its program started through the init, its outputs collected. */
async function runInPooled(sandbox: PersistentSandbox, spec: OneShotSpec, outputBytes: number): Promise<RunResult> {
  try {
    sandbox.workspace.writeFiles(spec.files ?? []);
    const ran = await sandbox.exec(spec.command, {
      ...(spec.stdin !== undefined ? { stdin: spec.stdin } : {}),
      ...(spec.env ? { env: spec.env } : {}),
      ...(spec.cwd ? { cwd: spec.cwd } : {}),
      ...(spec.onStdout ? { onStdout: spec.onStdout } : {}),
      ...(spec.onStderr ? { onStderr: spec.onStderr } : {}),
      ...(spec.signal ? { signal: spec.signal } : {}),
    });
    const result: RunResult = { ...ran, files: [], sandbox_id: sandbox.id };
    if (result.verdict !== 'system_error' && result.verdict !== 'canceled') {
      await collectInto(result, sandbox.workspace, spec.collect ?? ['out/**'], outputBytes);
    }
    return result;
  } catch (err) {
    if (spec.signal?.aborted) {
      const { error: _none, ...empty } = setupFailure('canceled');
      return { ...empty, verdict: 'canceled', sandbox_id: sandbox.id };
    }
    return { ...setupFailure(err instanceof Error ? err.message : String(err)), sandbox_id: sandbox.id };
  }
}
