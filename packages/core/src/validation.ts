import type { z } from 'zod';
import { KilnError, type FieldError } from './errors.js';

/** Turns zod issues into field errors with dotted paths under `root` (`body.limits.pids`). */
export function fieldErrors(error: z.ZodError, root: string): FieldError[] {
  return error.issues.map((issue) => {
    const path = [root, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message = `unknown field(s): ${issue.keys.join(', ')}; remove them`;
    }
    return { field: path, message };
  });
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
