import { KilnError } from '@kiln/core';
import type { FastifyInstance } from 'fastify';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Parses JSON bodies strictly, with errors that say what is wrong: bytes that are not UTF-8 are refused
 * (a lenient decoder would store U+FFFD in their place without a word), and so is a `__proto__` key (it
 * could change an object's prototype where the body is merged); other syntax errors name the position.
 */
export function parseJsonBodies(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

export function parseJsonBody(bytes: Buffer): unknown {
  if (bytes.length === 0) throw new KilnError('MALFORMED_JSON', 'the body is empty: send a JSON document (or no content-type)', { field: 'body' });
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new KilnError('MALFORMED_JSON', 'the body is not valid UTF-8: encode text as UTF-8, and binary content as base64 (encoding: "base64")', {
      field: 'body',
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, (key, value: unknown) => {
      if (key === '__proto__') {
        throw new KilnError('VALIDATION_FAILED', 'the key "__proto__" is not allowed anywhere in a body; rename or remove it', {
          field: 'body',
        });
      }
      return value;
    });
  } catch (err) {
    if (err instanceof KilnError) throw err;
    // The message names the position, never quotes the body (it may hold a secret).
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new KilnError('MALFORMED_JSON', `the body is not valid JSON${position ? ` (at character ${position})` : ''}`, { field: 'body' });
  }
  return parsed;
}
