import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { collectFiles } from './collect.js';
import { SafeRoot } from './safe-fs.js';
import { runSh } from './test-support.js';

/** The glob that froze a runner's event loop as a backtracking regex, and the name that set it off. */
const ATTACK_GLOB = '*a*a*a*a*a*a*a*a*a*a*a*a*b';
const SIXTY_AS = 'a'.repeat(60);

/** Counts turns of the event loop while `work` runs: a blocked loop counts none. */
async function loopTurnsDuring<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let running = true;
  const spin = () => {
    if (!running) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { result: await work(), turns };
  } finally {
    running = false;
  }
}

describe('collection in a real sandbox', () => {
  const driver = new BubblewrapDriver();
  afterAll(() => driver.drain());

  it('the exact attack: the 12-star glob against a 60-`a` file name completes, and the loop keeps turning', async () => {
    const { result, turns } = await loopTurnsDuring(() =>
      runSh(driver, `touch ${SIXTY_AS} && mkdir out && touch out/${SIXTY_AS}b`, {}, { collect: [ATTACK_GLOB, `out/${ATTACK_GLOB}`] }),
    );
    expect(result.verdict).toBe('ok');
    expect(result.files.map((f) => f.path)).toEqual([`out/${SIXTY_AS}b`]);
    expect(turns).toBeGreaterThan(0);
  });

  it('100,000 files: collection stops at its bound and the job fails as output_limit, saying why', async () => {
    const { result, turns } = await loopTurnsDuring(() =>
      runSh(
        driver,
        `mkdir -p out/many && cd out/many && python3 -c "import os\nfor i in range(100000): os.close(os.open('f%06d' % i, os.O_CREAT | os.O_WRONLY))" && echo done`,
        { disk_bytes: 512 * 1024 * 1024, memory_bytes: 512 * 1024 * 1024, wall_time_ms: 60_000, cpu_time_ms: 30_000 },
        { collect: ['**'] },
      ),
    );
    expect(result.stdout.toString()).toBe('done\n');
    expect(result.verdict).toBe('output_limit');
    expect(result.error).toMatch(/collection stopped: more than 10000 entries/);
    expect(result.files.length).toBeLessThanOrEqual(1000);
    expect(turns).toBeGreaterThan(10);
  }, 120_000);
});

describe('collectFiles on a real folder', () => {
  const root = mkdtempSync('/dev/shm/kiln-collect-');
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const folder = (name: string) => {
    const dir = `${root}/${name}`;
    mkdirSync(dir, { recursive: true });
    return new SafeRoot(dir);
  };

  it('does not walk folders no glob can match below (out/** never enters node_modules)', async () => {
    const safe = folder('prune');
    mkdirSync(`${root}/prune/node_modules/deep`, { recursive: true });
    for (let i = 0; i < 5000; i++) writeFileSync(`${root}/prune/node_modules/deep/m${i}`, '');
    mkdirSync(`${root}/prune/out`);
    writeFileSync(`${root}/prune/out/result.txt`, 'R');
    const outcome = await collectFiles(safe, ['out/**']);
    expect(outcome.stopped).toBeUndefined();
    expect(outcome.files.map((f) => [f.path, f.content.toString()])).toEqual([['out/result.txt', 'R']]);
    expect(outcome.entriesExamined).toBe(3);
  });

  it('stops at the time bound, gives the loop back between batches, and keeps what it collected', async () => {
    const safe = folder('slow');
    for (let i = 0; i < 2000; i++) writeFileSync(`${root}/slow/f${String(i).padStart(4, '0')}`, 'x');
    let fakeNow = 0;
    const { result, turns } = await loopTurnsDuring(() =>
      collectFiles(safe, ['*'], { maxTimeMs: 500, batchEntries: 50 }, () => fakeNow++),
    );
    expect(result.stopped).toMatch(/took more than 500 ms/);
    expect(result.files.length).toBeGreaterThan(0);
    expect(result.files.length).toBeLessThan(2000);
    expect(turns).toBeGreaterThanOrEqual(Math.floor(result.entriesExamined / 50));
  });

  it('stops at the matching bound, however the globs and names are made', async () => {
    const safe = folder('work');
    for (let i = 0; i < 300; i++) writeFileSync(`${root}/work/${'a'.repeat(200)}${i}`, '');
    const outcome = await collectFiles(safe, [ATTACK_GLOB, `?${ATTACK_GLOB}`], { maxMatchSteps: 100_000 });
    expect(outcome.stopped).toMatch(/more than 100000 steps/);
    expect(outcome.matchSteps).toBeLessThan(100_000 + 2 * 201 * 60);
  });

  it('counts files, bytes and depth against their bounds', async () => {
    const safe = folder('bounds');
    for (let i = 0; i < 10; i++) writeFileSync(`${root}/bounds/f${i}`, 'x'.repeat(100));
    mkdirSync(`${root}/bounds/d1/d2/d3`, { recursive: true });
    writeFileSync(`${root}/bounds/d1/d2/d3/deep`, 'deep');
    writeFileSync(`${root}/bounds/d1/shallow`, 'shallow');
    const few = await collectFiles(safe, ['**'], { maxFiles: 3 });
    expect(few.files).toHaveLength(3);
    const bytes = await collectFiles(safe, ['f*'], { maxTotalBytes: 250 });
    expect(bytes.files.map((f) => f.path)).toEqual(['f0', 'f1']);
    const shallow = await collectFiles(safe, ['d1/**'], { maxDepth: 2 });
    expect(shallow.files.map((f) => f.path)).toEqual(['d1/shallow']);
    expect(shallow.stopped).toBeUndefined();
  });

  it('does not collect a path longer than a report can name (1024 characters)', async () => {
    const safe = folder('long');
    const deep = `${root}/long/${Array.from({ length: 4 }, (_, i) => `${i}`.repeat(250)).join('/')}`;
    mkdirSync(deep, { recursive: true });
    writeFileSync(`${deep}/${'f'.repeat(20)}`, 'just fits');
    writeFileSync(`${deep}/${'f'.repeat(21)}`, 'too long');
    writeFileSync(`${deep}/f`, 'fits');
    const outcome = await collectFiles(safe, ['**']);
    expect(outcome.files.map((f) => [f.path.length, f.content.toString()])).toEqual([[1005, 'fits'], [1024, 'just fits']]);
  });
});
