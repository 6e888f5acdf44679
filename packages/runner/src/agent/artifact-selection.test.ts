import { describe, expect, it } from 'vitest';
import { selectArtifacts } from './artifact-selection.js';

const rules = { max_count: 2, max_bytes: 100, max_total_bytes: 150 };

describe('selectArtifacts', () => {
  it('keeps files within every rule', () => {
    const { accepted, rejected } = selectArtifacts([{ path: 'out/a', size_bytes: 10 }], rules);
    expect(accepted.map((f) => f.path)).toEqual(['out/a']);
    expect(rejected).toEqual([]);
  });

  it('refuses a file over max_bytes, naming the rule', () => {
    const { accepted, rejected } = selectArtifacts([{ path: 'out/big', size_bytes: 101 }], rules);
    expect(accepted).toEqual([]);
    expect(rejected[0]).toMatchObject({ name: 'out/big', size_bytes: 101 });
    expect(rejected[0]!.reason).toContain('max_bytes');
  });

  it('refuses files past max_count and max_total_bytes, in path order', () => {
    const files = [
      { path: 'out/c', size_bytes: 10 },
      { path: 'out/a', size_bytes: 100 },
      { path: 'out/b', size_bytes: 60 },
    ];
    const { accepted, rejected } = selectArtifacts(files, rules);
    expect(accepted.map((f) => f.path)).toEqual(['out/a', 'out/c']);
    expect(rejected.map((r) => [r.name, r.reason.split(' ')[0]])).toEqual([['out/b', 'would']]);
  });
});
