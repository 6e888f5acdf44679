import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectHostCapacity, formatBytes, hostRefusal, MemoryLedger, ownCgroupMemoryLimitBytes, type HostCapacity } from './host-capacity.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('hostRefusal', () => {
  const host: HostCapacity = { memoryBudgetBytes: 22 * GiB, memoryBudgetSource: '90% of the host RAM', pidMax: 32_768 };
  const fits = { memory_bytes: 256 * MiB, disk_bytes: 256 * MiB, pids: 64 };

  it('refuses the policy of the issue (64 GiB of memory and workspace on a 24 GiB host), naming limit and budget', () => {
    expect(hostRefusal({ ...fits, memory_bytes: 64 * GiB }, host)).toBe(
      "limits.memory_bytes 64 GiB exceeds this runner's memory budget of 22 GiB (90% of the host RAM)",
    );
    expect(hostRefusal({ ...fits, disk_bytes: 64 * GiB }, host)).toMatch(/^limits\.disk_bytes 64 GiB exceeds .* tmpfs held in memory$/);
    expect(hostRefusal({ ...fits, pids: 40_000 }, host)).toBe("limits.pids 40000 exceeds this host's kernel.pid_max of 32768");
  });

  it('accepts what fits, up to the budget itself', () => {
    expect(hostRefusal(fits, host)).toBeUndefined();
    expect(hostRefusal({ memory_bytes: 22 * GiB, disk_bytes: 22 * GiB, pids: 32_768 }, host)).toBeUndefined();
  });

  it('formats sizes a person reads', () => {
    expect([formatBytes(512), formatBytes(1536 * MiB), formatBytes(64 * GiB)]).toEqual(['512 bytes', '1.5 GiB', '64 GiB']);
  });
});

describe('the memory budget', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cgroup-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const fakeCgroup = (procSelf: string, files: Record<string, string>) => {
    const root = mkdtempSync(join(dir, 'root-'));
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), content);
    }
    writeFileSync(join(root, 'self-cgroup'), procSelf);
    return ownCgroupMemoryLimitBytes(join(root, 'self-cgroup'), root);
  };

  it("reads the runner's own cgroup limit on cgroup v1 and v2, and none when unlimited", () => {
    expect(fakeCgroup('4:memory:/kiln\n0::/\n', { 'memory/kiln/memory.limit_in_bytes': `${2 * GiB}\n` })).toBe(2 * GiB);
    expect(fakeCgroup('0::/system.slice/kiln.service\n', { 'system.slice/kiln.service/memory.max': `${3 * GiB}\n` })).toBe(3 * GiB);
    expect(fakeCgroup('0::/kiln\n', { 'kiln/memory.max': 'max\n' })).toBeUndefined();
    expect(fakeCgroup('4:memory:/\n', { 'memory/memory.limit_in_bytes': '9223372036854771712\n' })).toBeUndefined();
  });

  it('defaults to 90% of the smaller of RAM and cgroup limit; the operator can set it', () => {
    const measured = detectHostCapacity();
    expect(measured.memoryBudgetBytes).toBeGreaterThan(0);
    expect(measured.pidMax).toBeGreaterThan(0);
    expect(detectHostCapacity({ memoryBudgetBytes: 400 * MiB })).toMatchObject({
      memoryBudgetBytes: 400 * MiB,
      memoryBudgetSource: 'KILN_RUNNER_MEMORY_BUDGET_BYTES',
    });
  });
});

describe('MemoryLedger', () => {
  it('admits jobs while their limits fit, then in arrival order as memory frees', async () => {
    const ledger = new MemoryLedger(400);
    const order: string[] = [];
    expect(await ledger.reserve(150)).toBe(true);
    expect(await ledger.reserve(150)).toBe(true);
    const big = ledger.reserve(300).then((ok) => order.push(`big:${ok}`));
    const small = ledger.reserve(50).then((ok) => order.push(`small:${ok}`));
    // 100 bytes are free and the small job would fit, but it came after the big one: it waits its turn.
    expect(ledger.availableBytes).toBe(100 - 350);
    await Promise.resolve();
    expect(order).toEqual([]);
    ledger.release(150);
    ledger.release(150);
    await Promise.all([big, small]);
    expect(order).toEqual(['big:true', 'small:true']);
    expect(ledger.freeBytes).toBe(50);
  });

  it('a canceled wait gives up its place and reserves nothing', async () => {
    const ledger = new MemoryLedger(100);
    expect(await ledger.reserve(100)).toBe(true);
    const abort = new AbortController();
    const waiting = ledger.reserve(60, abort.signal);
    const after = ledger.reserve(40);
    abort.abort();
    expect(await waiting).toBe(false);
    ledger.release(100);
    expect(await after).toBe(true);
    expect(ledger.freeBytes).toBe(60);
  });

  it('tryReserve takes what is free now or nothing, and never jumps a job waiting for room', async () => {
    const ledger = new MemoryLedger(300);
    expect(ledger.tryReserve(128)).toBe(true);
    expect(ledger.tryReserve(128)).toBe(true);
    expect(ledger.tryReserve(128)).toBe(false);
    expect(ledger.freeBytes).toBe(44);
    const job = ledger.reserve(100);
    // 44 bytes are free, but the waiting job asked for them first.
    expect(ledger.tryReserve(40)).toBe(false);
    ledger.release(128);
    expect(await job).toBe(true);
    expect(ledger.tryReserve(72)).toBe(true);
    expect(ledger.freeBytes).toBe(0);
  });
});
