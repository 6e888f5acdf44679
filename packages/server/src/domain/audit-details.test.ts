import { describe, expect, it } from 'vitest';
import { AUDIT_DETAILS_MAX_CHARS, AUDIT_STRING_MAX_CHARS, escapeAuditText, sanitizeAuditDetails } from './audit-details.js';

describe('escapeAuditText', () => {
  it('escapes C0, DEL, C1, bidi overrides and isolates, and leaves other text alone', () => {
    expect(escapeAuditText('a\u0000b\u001b[2Jc\u007fd\u0085e\u009ff')).toBe('a\\u0000b\\u001b[2Jc\\u007fd\\u0085e\\u009ff');
    expect(escapeAuditText('\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069')).toBe(
      '\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069',
    );
    expect(escapeAuditText('tab\there\nnewline')).toBe('tab\\u0009here\\u000anewline');
    expect(escapeAuditText('café 日本 🙂 out/plot.png')).toBe('café 日本 🙂 out/plot.png');
  });

  it('bounds the length, and says how long the original was', () => {
    const long = escapeAuditText('x'.repeat(100_000));
    expect(long.length).toBeLessThan(AUDIT_STRING_MAX_CHARS + 20);
    expect(long.endsWith('…[100000 chars]')).toBe(true);
    // Escaping cannot push a string past the bound either.
    expect(escapeAuditText('\u001b'.repeat(AUDIT_STRING_MAX_CHARS)).length).toBeLessThan(AUDIT_STRING_MAX_CHARS + 20);
  });
});

describe('sanitizeAuditDetails', () => {
  it('escapes every string and key at every depth', () => {
    expect(sanitizeAuditDetails({ 'k\u001b': ['\u202e', { n: 'a\u0007' }], n: 1, b: true, z: null })).toEqual({
      'k\\u001b': ['\\u202e', { n: 'a\\u0007' }],
      n: 1,
      b: true,
      z: null,
    });
  });

  it('bounds entries, depth and the whole size', () => {
    const wide = sanitizeAuditDetails({ list: Array.from({ length: 1000 }, (_, i) => i) });
    expect((wide.list as unknown[]).length).toBe(65);
    const deep = sanitizeAuditDetails({ a: { b: { c: { d: { e: 1 } } } } });
    expect(JSON.stringify(deep)).toContain('nested too deep');
    const huge = sanitizeAuditDetails(Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`k${i}`, 'v'.repeat(500)])));
    expect(huge).toMatchObject({ details_truncated: true });
    expect(JSON.stringify(huge).length).toBeLessThanOrEqual(AUDIT_DETAILS_MAX_CHARS);
  });
});
