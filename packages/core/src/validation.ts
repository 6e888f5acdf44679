import { z } from 'zod';
import { KilnError, type FieldError } from './errors.js';

/** Turns zod issues into field errors with dotted paths under `root` (`body.limits.pids`). */
export function fieldErrors(error: z.ZodError, root: string): FieldError[] {
  return error.issues.map((issue) => {
    const path = [root, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    return { field: path, message: readableMessage(issue) };
  });
}

const isDefaultMessage = (message: string) => /^(Invalid|Too (big|small)|Expected)/.test(message);

function sizeUnit(origin: string | undefined): string {
  if (origin === 'string') return ' characters';
  if (origin === 'array' || origin === 'set') return ' items';
  if (origin === 'object' || origin === 'record') return ' entries';
  return '';
}

/**
 * zod's default wording ("Invalid input: expected number, received NaN", "Invalid key in record")
 * rewritten into what the field needs; messages the schemas set themselves are kept.
 */
function readableMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field(s): ${issue.keys.join(', ')}; remove them`;
    case 'invalid_key': {
      const inner = issue.issues[0];
      const why = inner && !isDefaultMessage(inner.message) ? inner.message : 'is not an allowed key';
      return `key ${JSON.stringify(String(issue.path.at(-1) ?? '').slice(0, 64))} ${why.replace(/^must/, 'is not valid: it must')}`;
    }
    default:
      break;
  }
  if (!isDefaultMessage(issue.message)) return issue.message;
  switch (issue.code) {
    case 'invalid_type':
      return /received undefined$/.test(issue.message) ? `is required (${issue.expected})` : `must be ${article(issue.expected)}`;
    case 'too_big':
      return `must be at most ${String(issue.maximum)}${sizeUnit(issue.origin)}`;
    case 'too_small':
      return issue.origin === 'string' && Number(issue.minimum) === 1
        ? 'must not be empty'
        : `must be at least ${String(issue.minimum)}${sizeUnit(issue.origin)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_format':
      return `must be ${article(issue.format)}${issue.format === 'regex' ? ' matching the expected pattern' : ''}`;
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    default:
      return issue.message;
  }
}

function article(word: string): string {
  if (word === 'int') return 'an integer';
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

/**
 * An integer query parameter: decimal digits only (`""`, `0x10`, `1e3`, `+5` and `-1` are refused,
 * where `Number()` would take them), at most 15 digits, then checked against `min` and `max`.
 */
export function decimalIntegerQuery(min: number, max: number) {
  return z
    .string()
    .regex(/^[0-9]{1,15}$/, `must be a whole number written in decimal digits, from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
}

/** Parses `value` or throws VALIDATION_FAILED naming every bad field. */
export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, root: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = fieldErrors(result.error, root);
  const first = errors[0];
  const detail = first
    ? `${first.field}: ${first.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`
    : 'the request is not valid';
  throw new KilnError('VALIDATION_FAILED', detail, { errors });
}
