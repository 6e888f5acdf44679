import { describe, expect, it } from 'vitest';
import { plainText } from './text';

describe('plainText: program output as the page shows it', () => {
  it('removes colors, cursor moves, titles and other escapes, keeping the text', () => {
    expect(plainText('\x1b[31mred\x1b[0m \x1b[1;4mbold\x1b[m')).toBe('red bold');
    expect(plainText('a\x1b[2J\x1b[Hb\x1b[10;20Hc')).toBe('abc');
    expect(plainText('\x1b]0;evil title\x07after \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\')).toBe('after link');
    expect(plainText('\x1bPq#0;2;0;0;0\x1b\\ok \x9b31mc1\x9b0m')).toBe('ok c1');
  });

  it('drops control characters but keeps newlines and tabs; markup stays as it was written', () => {
    expect(plainText('a\x00b\x07c\x08d\r\ne\tf\x7f')).toBe('abcd\ne\tf');
    expect(plainText('<script>alert(1)</script><img src=x onerror=alert(1)>')).toBe('<script>alert(1)</script><img src=x onerror=alert(1)>');
  });

  it('is linear on hostile input (an unterminated escape does not backtrack)', () => {
    const hostile = `\x1b]${'x'.repeat(200_000)}` + `\x1b[${'1;'.repeat(100_000)}`;
    expect(plainText(hostile).length).toBeLessThan(hostile.length);
  });
});
