import type { KilnClient } from '@kiln/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSystem, type DbKind } from './support/kiln-system.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Prints which compiler built it: gcc and clang both define __VERSION__, only clang __clang__. */
const WHICH_COMPILER = `#include <stdio.h>
int main(void) {
#ifdef __clang__
  printf("clang %d\\n", __clang_major__);
#else
  printf("gcc %d\\n", __GNUC__);
#endif
  return 0;
}
`;

describe.each<DbKind>(['sqlite', 'postgres'])('the language catalog through the job API (%s)', (db) => {
  const kiln = new KilnSystem(db);
  let agentClient: KilnClient;

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'catalog-runner', capacity: 2 });
    agentClient = (await kiln.newTenant()).agentClient;
  }, 180_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('lists at least forty languages with versions, aliases, toolchains and libraries', async () => {
    const { items } = await agentClient.languages();
    expect(items.length).toBeGreaterThanOrEqual(40);
    const byName = new Map(items.map((l) => [l.name, l]));
    const c = byName.get('c');
    expect(c?.runtimes.map((r) => r.runtime)).toEqual(expect.arrayContaining(['gcc', 'clang']));
    expect(c?.versions.length).toBeGreaterThanOrEqual(2);
    expect(byName.get('python')?.aliases).toEqual(expect.arrayContaining(['py', 'python3']));
    expect(byName.get('python')?.libraries).toEqual(expect.arrayContaining(['numpy', 'pandas', 'scipy', 'matplotlib', 'scikit-learn', 'sympy', 'requests', 'pillow', 'PyYAML']));
    expect(byName.get('node')?.libraries).toContain('typescript');
    expect(byName.get('cpp')?.aliases).toContain('c++');
    expect(byName.get('typescript')?.aliases).toContain('ts');
    expect(byName.get('csharp')?.aliases).toContain('cs');
  });

  it('plots a chart with the default Python (by its alias and a version range) into a PNG artifact', async () => {
    const job = await agentClient.jobs.createAndWait({
      language: 'py',
      version: '3.x',
      code: `import os
import numpy as np
import matplotlib.pyplot as plt
os.makedirs("out", exist_ok=True)
x = np.linspace(0, 2 * np.pi, 50)
plt.plot(x, np.sin(x))
plt.savefig("out/sine.png")
print("saved")
`,
      limits: { wall_time_ms: 30_000 },
    });
    expect({ status: job.status, language: job.language, stdout: job.stdout, stderr: job.stderr }).toEqual({
      status: 'succeeded',
      language: 'python',
      stdout: 'saved\n',
      stderr: '',
    });
    expect(job.version).toMatch(/^3\.\d+\.\d+$/);
    const artifacts = await agentClient.artifacts.list({ owner_type: 'job', owner_id: job.id });
    const chart = artifacts.items.find((a) => a.name === 'out/sine.png');
    expect(chart).toBeDefined();
    const content = await agentClient.artifacts.download(chart!.id);
    expect(content.bytes.subarray(0, 8)).toEqual(PNG_SIGNATURE);
  }, 60_000);

  it('runs the toolchain of the version asked for, side by side', async () => {
    const [gcc11, clang, plain] = await Promise.all([
      agentClient.jobs.createAndWait({ language: 'c', version: '11', code: WHICH_COMPILER }),
      agentClient.jobs.createAndWait({ language: 'clang', version: '>=14', code: WHICH_COMPILER }),
      agentClient.jobs.createAndWait({ language: 'c', code: WHICH_COMPILER }),
    ]);
    expect({ stdout: gcc11.stdout, version: gcc11.version?.split('.')[0] }).toEqual({ stdout: 'gcc 11\n', version: '11' });
    // `clang` is an alias of c; the highest version in range is clang's.
    expect(clang.stdout).toBe(`clang ${clang.version?.split('.')[0]}\n`);
    // No version: the language's default toolchain.
    expect({ stdout: plain.stdout, version: plain.version }).toEqual({ stdout: 'gcc 12\n', version: null });
  }, 90_000);

  it('refuses a version no runner offers and one that is not a version, changing nothing', async () => {
    const before = (await agentClient.jobs.list()).items.length;
    await expect(agentClient.jobs.create({ language: 'python', version: '2.7', code: 'print 1' })).rejects.toMatchObject({ status: 422 });
    await expect(agentClient.jobs.create({ language: 'python', version: 'newest please', code: 'print(1)' })).rejects.toMatchObject({ status: 400 });
    expect((await agentClient.jobs.list()).items.length).toBe(before);
  });
});
