import { KilnError } from '@kiln/core';

/**
 * Opaque list cursors: base64url of `{"after": <last id>}`. Ids are time-sortable, so "after this id" is
 * a stable position even while rows are added. Anything that does not decode is 400 INVALID_CURSOR.
 */
export function encodeCursor(afterId: string): string {
  return Buffer.from(JSON.stringify({ after: afterId }), 'utf8').toString('base64url');
}

const ID_SHAPE = /^[a-z]{2,4}_[0-9a-z]{26}$/;

/** Decodes a cursor; `isValidPosition` says what a position looks like for this list (an id by default). */
export function decodeCursor(
  cursor: string | undefined,
  isValidPosition: (after: string) => boolean = (after) => ID_SHAPE.test(after),
): string | undefined {
  if (cursor === undefined) return undefined;
  const invalid = () =>
    new KilnError('INVALID_CURSOR', 'the cursor is not one this server gave out; start again without it', {
      field: 'query.cursor',
    });
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const after = (decoded as { after?: unknown } | null)?.after;
  if (typeof after !== 'string' || !isValidPosition(after)) throw invalid();
  return after;
}

/** Cuts one extra row fetched to learn whether another page exists. */
export function page<T>(
  rows: T[],
  limit: number,
  positionOf: (row: T) => string = (row) => (row as { id: string }).id,
): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null };
}
