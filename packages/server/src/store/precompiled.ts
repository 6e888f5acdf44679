import { CompiledQuery, type Compilable, type Kysely, type QueryResult } from 'kysely';
import type { Database } from './schema.js';
import type { DbDialect, DbHandle } from './store.js';

/**
 * Statements of the job's hot path, built and compiled once per dialect and run with fresh arguments.
 * Kysely builds and compiles every query anew: on a small job that was about a fifth of the control
 * plane's CPU, for statements whose shape never changes. `build` receives one placeholder per argument
 * and must pass each, unchanged, as a value (a `where` operand, an inserted or set value): the compiled
 * parameters are the placeholders, replaced by the arguments at each run. An argument that is a list
 * (`in (…)`) changes the shape, so it cannot be one; such statements stay built per call.
 */
export function precompiled<Args extends unknown[], Row>(
  build: (db: Kysely<Database>, ...slots: never[]) => Compilable<Row>,
  arity: Args['length'],
): (h: DbHandle, ...args: Args) => Promise<QueryResult<Row>> {
  const compiled = new Map<DbDialect, { sql: string; bind: (args: Args) => unknown[] }>();
  return async (h, ...args) => {
    let query = compiled.get(h.dialect);
    if (!query) {
      query = compile(h.db, build, arity);
      compiled.set(h.dialect, query);
    }
    return h.db.executeQuery<Row>(CompiledQuery.raw(query.sql, query.bind(args)));
  };
}

/** A placeholder no real argument can equal: a fresh object per slot, found again by identity. */
function compile<Args extends unknown[], Row>(
  db: Kysely<Database>,
  build: (db: Kysely<Database>, ...slots: never[]) => Compilable<Row>,
  arity: number,
): { sql: string; bind: (args: Args) => unknown[] } {
  const slots = Array.from({ length: arity }, (_, i) => ({ slot: i }));
  const { sql, parameters } = build(db, ...(slots as never[])).compile();
  const positions = parameters.map((p) => slots.indexOf(p as { slot: number }));
  const used = new Set(positions.filter((i) => i >= 0));
  if (used.size !== arity) throw new Error(`a precompiled statement must use each of its ${arity} arguments as a value: ${sql}`);
  const fixed = [...parameters];
  return { sql, bind: (args) => positions.map((i, at) => (i >= 0 ? args[i] : fixed[at])) };
}
