import { describe, expect, it } from 'vitest';
import { compareVersionsDescending, isVersionRequest, resolveVersion } from './versions.js';

const C = ['12.2.0', '11.3.0', '16.0.6', '15.0.6', '14.0.6'];

describe('language versions', () => {
  it('resolves an exact version, a prefix, a range or * to the highest offered one in it', () => {
    expect(resolveVersion('11.3.0', C)).toBe('11.3.0');
    expect(resolveVersion('11', C)).toBe('11.3.0');
    expect(resolveVersion('12.x', C)).toBe('12.2.0');
    expect(resolveVersion('*', C)).toBe('16.0.6');
    expect(resolveVersion('>=14 <16', C)).toBe('15.0.6');
    expect(resolveVersion('^14.0.0', C)).toBe('14.0.6');
    expect(resolveVersion('13', C)).toBeUndefined();
  });

  it('reads dotted versions that are not semver (two parts, leading zeros, four parts)', () => {
    expect(resolveVersion('5', ['5.9'])).toBe('5.9');
    expect(resolveVersion('1.7', ['1.07.1'])).toBe('1.07.1');
    expect(resolveVersion('3.1', ['3.1.2.0'])).toBe('3.1.2.0');
    expect(resolveVersion('2022.x', ['2022.12'])).toBe('2022.12');
    expect(['5.4.4', '5.1.5', '5.3.6', 'snapshot'].sort(compareVersionsDescending)).toEqual(['5.4.4', '5.3.6', '5.1.5', 'snapshot']);
  });

  it('refuses text that is neither a version nor a range, and hostile ranges stay cheap', () => {
    expect(isVersionRequest('latest')).toBe(false);
    expect(isVersionRequest('3.x')).toBe(true);
    expect(resolveVersion('latest', C)).toBeUndefined();
    // The API bounds `version` to 64 characters; a range of alternatives that long resolves at once.
    const many = Array.from({ length: 12 }, (_, i) => `${i}`).join('||').slice(0, 64);
    expect(resolveVersion(many, C)).toBe('11.3.0');
    expect(resolveVersion('1'.repeat(64), C)).toBeUndefined();
    expect(resolveVersion(`${'>'.repeat(32)}1`, C)).toBeUndefined();
  });
});
