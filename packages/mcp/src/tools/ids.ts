import { z } from 'zod';

/** An id argument; its prefix is named in the description so an agent passes the right one. */
export function idSchema(prefix: string, description: string) {
  return z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9_-]+$/, `must be an id such as "${prefix}_01hx…"`)
    .describe(`${description} (an id such as "${prefix}_01hx…")`);
}
