import { describe, expect, it } from 'vitest';
import { GlobSet, globMatches, type GlobMeter } from './glob.js';

/**
 * The regex translation kiln used before (backtracking, so exponential on some patterns): kept here only
 * as the reference the linear matcher must agree with, on inputs too small to hurt.
 */
function referenceRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        if (glob[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

/** Every string of length 0..maxLength over `alphabet`. */
function* strings(alphabet: readonly string[], maxLength: number): Generator<string> {
  yield '';
  if (maxLength === 0) return;
  for (const shorter of strings(alphabet, maxLength - 1)) {
    if (shorter.length !== maxLength - 1) continue;
    for (const a of alphabet) yield shorter + a;
  }
}
const upTo = (alphabet: readonly string[], maxLength: number) => {
  const out: string[] = [];
  for (let n = 0; n <= maxLength; n++) for (const s of strings(alphabet, n)) if (s.length === n) out.push(s);
  return [...new Set(out)];
};

describe('glob matching', () => {
  it('matches globs the way users expect', () => {
    expect(globMatches('out/**', 'out/a/b.txt')).toBe(true);
    expect(globMatches('out/**', 'outside.txt')).toBe(false);
    expect(globMatches('out/**', 'out')).toBe(false);
    expect(globMatches('**/*.txt', 'a.txt')).toBe(true);
    expect(globMatches('**/*.txt', 'x/y/a.txt')).toBe(true);
    expect(globMatches('**/*.txt', 'x/y/a.txt.gz')).toBe(false);
    expect(globMatches('*.txt', 'x/a.txt')).toBe(false);
    expect(globMatches('data/?.csv', 'data/1.csv')).toBe(true);
    expect(globMatches('data/?.csv', 'data/10.csv')).toBe(false);
    expect(globMatches('data/?.csv', 'data//.csv')).toBe(false);
    expect(globMatches('[ab].txt', '[ab].txt')).toBe(true);
    expect(globMatches('[ab].txt', 'a.txt')).toBe(false);
    expect(globMatches('a.b', 'axb')).toBe(false);
  });

  it('agrees with the former regex translation on every small pattern and path', () => {
    const patterns = upTo(['a', '/', '*', '?', '.'], 4);
    const paths = upTo(['a', 'b', '/', '.'], 5);
    let compared = 0;
    for (const pattern of patterns) {
      const reference = referenceRegExp(pattern);
      const set = new GlobSet([pattern]);
      for (const path of paths) {
        const expected = reference.test(path);
        if (set.matches(path) !== expected) expect({ pattern, path, matches: set.matches(path) }).toEqual({ pattern, path, matches: expected });
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(1_000_000 - 1);
  });

  it('a path matches a set when it matches any of its globs', () => {
    const set = new GlobSet(['out/**', '*.png']);
    expect(set.matches('out/x')).toBe(true);
    expect(set.matches('a.png')).toBe(true);
    expect(set.matches('dir/a.png')).toBe(false);
    expect(new GlobSet([]).matches('anything')).toBe(false);
  });

  it('matches incrementally and says when no continuation can match (a walk prunes that folder)', () => {
    const set = new GlobSet(['out/**/*.txt']);
    const inOut = set.advance(set.start(), 'out/');
    expect(set.alive(inOut)).toBe(true);
    expect(set.accepts(set.advance(inOut, 'a/b.txt'))).toBe(true);
    expect(set.alive(set.advance(set.start(), 'node_modules/'))).toBe(false);
  });

  it('is linear on the pattern that froze a runner: 12 stars against 60 and 60,000 `a`s', () => {
    const attack = '*a*a*a*a*a*a*a*a*a*a*a*a*b';
    const stepsFor = (n: number) => {
      const meter: GlobMeter = { steps: 0 };
      expect(globMatches(attack, 'a'.repeat(n), meter)).toBe(false);
      return meter.steps;
    };
    const small = stepsFor(60);
    const large = stepsFor(60_000);
    // Steps grow with the input times the pattern's size, not exponentially: bounded by n × 4k.
    expect(small).toBeLessThanOrEqual(60 * 4 * attack.length);
    expect(large).toBeLessThanOrEqual(60_000 * 4 * attack.length);
    // The same cost per character on a long input as on a short one (the first characters fill the set).
    expect(large).toBeLessThanOrEqual(small * 1000 * 1.2);
    expect(globMatches(attack, `${'a'.repeat(60)}b`)).toBe(true);
  });

  it('stays linear on other backtracking shapes: nested globstars, question marks, many globs', () => {
    const cases: [string[], string][] = [
      [['**/**/**/**/**/**/**/**/x'], 'a/'.repeat(5000)],
      [['?*?*?*?*?*?*?*?*?*?*b'], 'a'.repeat(20_000)],
      [Array.from({ length: 32 }, (_, i) => `${'*a'.repeat(8)}${i}`), 'a'.repeat(5000)],
    ];
    for (const [globs, path] of cases) {
      const meter: GlobMeter = { steps: 0 };
      const set = new GlobSet(globs);
      expect(set.matches(path, meter)).toBe(false);
      const size = globs.reduce((n, g) => n + g.length + 1, 0);
      expect(meter.steps).toBeLessThanOrEqual(path.length * 8 * size);
    }
  });
});
