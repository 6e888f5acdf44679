import { describe, expect, it } from 'vitest';
import { boundRejected, selectArtifacts } from './artifact-selection.js';

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

describe('boundRejected', () => {
  it('names the first files and sums up the rest in one entry', () => {
    const rejected = Array.from({ length: 250 }, (_, i) => ({ name: `out/f${i}`, size_bytes: 2, reason: 'r' }));
    const bounded = boundRejected(rejected, 100);
    expect(bounded).toHaveLength(101);
    expect(bounded[99]!.name).toBe('out/f99');
    expect(bounded[100]).toEqual({
      name: '150 more files',
      size_bytes: 300,
      reason: '150 more files refused for the same limits (only the first 100 are named)',
    });
    expect(boundRejected(rejected.slice(0, 5), 100)).toHaveLength(5);
  });
});
