import { existsSync } from 'node:fs';
import type { Limits } from '@kiln/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { PersistentSandbox } from '../sandbox/persistent/persistent-sandbox.js';
import { TEST_LIMITS, waitFor } from '../sandbox/test-support.js';
import { PooledDriver } from './pooled-driver.js';
import type { PoolRoom } from './warm-pool.js';

// Real bubblewrap sandboxes, cgroups and uids (run as root, like the other sandbox suites).
const limits: Limits = { ...TEST_LIMITS, wall_time_ms: 5_000 };
const inner = new BubblewrapDriver();
const drivers: PooledDriver[] = [];

function pooled(room: PoolRoom = { slots: 4, memoryBytes: 4 * limits.memory_bytes }, idleMs = 60_000, perShape = 1) {
  const d = new PooledDriver(inner, { room: () => room, perShape, idleMs });
  drivers.push(d);
  return d;
}

/** Waits until the pool holds `n` ready sandboxes of any shape. */
async function ready(d: PooledDriver, n: number): Promise<void> {
  if (!(await waitFor(() => d.pool.stats().ready >= n, 10_000))) throw new Error(`the pool never held ${n} ready sandboxes`);
}

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ command: ['/bin/sh', '-c', script], limits, ...extra });

afterAll(async () => {
  for (const d of drivers) await d.drain();
  await inner.drain();
});

describe('the warm pool', () => {
  it('a job takes a pre-built sandbox: its files placed, stdin, env and cwd given, outputs collected', async () => {
    const d = pooled();
    d.pool.want({ limits, loopback: false });
    await ready(d, 1);
    const r = await d.run(
      sh('cat in.txt; read line; echo "$line $GREETING $(pwd) $(id -u)"; mkdir -p /workspace/out && echo art > /workspace/out/a.txt', {
        files: [{ path: 'sub/in.txt', content: 'from a file\n' }],
        stdin: 'from stdin\n',
        env: { GREETING: 'hi' },
        cwd: '/workspace/sub',
      }),
    );
    expect(r.verdict).toBe('ok');
    expect(r.stdout.toString()).toBe('from a file\nfrom stdin hi /workspace/sub 1000\n');
    expect(r.files.map((f) => [f.path, f.content.toString()])).toEqual([['out/a.txt', 'art\n']]);
    expect(d.pool.stats().shapes[0]).toMatchObject({ taken: 1, missed: 0 });
  });

  it('used once: nothing one job leaves (files, /tmp, /dev/shm, a process that detached) reaches the next', async () => {
    const d = pooled({ slots: 4, memoryBytes: 8 * limits.memory_bytes }, 60_000, 2);
    d.pool.want({ limits, loopback: false });
    await ready(d, 2);
    const first = await d.run(
      sh('echo left > /workspace/left; echo t > /tmp/left; echo s > /dev/shm/left; (setsid sleep 30 >/dev/null 2>&1 &) ; echo planted'),
    );
    expect(first.stdout.toString()).toBe('planted\n');
    const second = await d.run(sh('ls -A /workspace /tmp /dev/shm; pgrep -x sleep || echo no-sleep'));
    expect(second.verdict).toBe('ok');
    expect(second.stdout.toString()).not.toContain('left');
    expect(second.stdout.toString()).toContain('no-sleep');
    expect(second.sandbox_id).not.toBe(first.sandbox_id);
    expect(d.pool.stats().shapes[0]!.taken).toBe(2);
  });

  it('a pooled job keeps the one-shot bounds: no network socket, wall time, output, and a cancel', async () => {
    const d = pooled({ slots: 4, memoryBytes: 8 * limits.memory_bytes }, 60_000, 2);
    d.pool.want({ limits, loopback: false });
    await ready(d, 2);
    const net = await d.run({ command: ['/usr/bin/python3', '-c', 'import socket\ntry:\n socket.socket()\n print("open")\nexcept OSError as e:\n print("refused")'], limits });
    expect(net.stdout.toString()).toBe('refused\n');
    const slow = await d.run(sh('sleep 5', { limits: { ...limits, wall_time_ms: 300 } }));
    expect(slow.verdict).toBe('time_limit');
    await ready(d, 1);
    const loud = await d.run(sh('yes', { limits: { ...limits, output_bytes: 1000 } }));
    expect(loud.verdict).toBe('output_limit');
    expect(loud.stdout.length).toBeLessThanOrEqual(1000);
    await ready(d, 1);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const canceled = await d.run(sh('sleep 5', { signal: abort.signal }));
    expect(canceled.verdict).toBe('canceled');
  });

  it('never grows past the free capacity, gives back what a job needs, and shrinks when idle', async () => {
    const room: PoolRoom = { slots: 1, memoryBytes: 8 * limits.memory_bytes };
    const d = pooled(room, 400, 3);
    d.pool.want({ limits, loopback: false });
    await ready(d, 1);
    await d.pool.settled();
    expect(d.pool.stats().ready).toBe(1); // one slot free: one sandbox, not perShape
    // A job took the slot's memory: the pool gives its sandbox back.
    room.memoryBytes = limits.memory_bytes / 2;
    d.pool.trim();
    await d.pool.settled();
    expect(d.pool.stats()).toMatchObject({ ready: 0, held_memory_bytes: 0 });
    // A shape bigger than the free memory is never built: the job runs the one-shot way.
    const r = await d.run(sh('echo fresh'));
    expect(r.stdout.toString()).toBe('fresh\n');
    expect(d.pool.stats().shapes[0]).toMatchObject({ missed: 1, ready: 0, building: 0 });
    // Room again, then nobody asks: the ready sandbox is destroyed once the shape has been idle.
    room.memoryBytes = 8 * limits.memory_bytes;
    d.pool.want({ limits, loopback: false });
    await ready(d, 1);
    expect(await waitFor(() => d.pool.stats().ready === 0 && d.pool.stats().shapes.length === 0, 10_000)).toBe(true);
  });

  it('a compiled language (compile status on fd 3) goes the one-shot way and leaves the pool alone', async () => {
    const d = pooled();
    const r = await d.run(sh('echo compiled', { reportsCompileStatus: true }));
    expect(r.stdout.toString()).toBe('compiled\n');
    expect(d.pool.stats().shapes).toEqual([]);
  });

  it('sessions take from the same pool: a loopback sandbox with the session env and files', async () => {
    const d = pooled();
    d.pool.want({ limits, loopback: true });
    await ready(d, 1);
    const handle = await d.start({ limits, env: { WHO: 'session' }, files: [{ path: 'f.txt', content: 'file\n' }] });
    expect(handle).toBeInstanceOf(PersistentSandbox);
    expect(d.pool.stats().shapes[0]).toMatchObject({ shape: expect.stringMatching(/^loopback\//), taken: 1 });
    const sbx = handle as PersistentSandbox;
    const r = await sbx.exec('cat f.txt; echo $WHO; python3 -c "import socket; s=socket.socket(); s.bind((\'127.0.0.1\', 0)); print(\'bound\')"');
    expect(r.stdout.toString()).toBe('file\nsession\nbound\n');
    const root = sbx.hostPaths.workspaceRoot;
    await sbx.destroy();
    expect(existsSync(`${root}/work/f.txt`)).toBe(false);
  });
});
