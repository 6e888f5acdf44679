import fc from 'fast-check';

/**
 * fast-check arbitraries derived from the OpenAPI document's JSON schemas, for the API fuzz test: each
 * value is mostly of the schema's shape (so requests reach past validation) with junk mixed in at every
 * level (so validation itself is attacked). Test-only: the fuzz imports it; nothing in the server does.
 */

type JsonSchema = Record<string, unknown>;

/** Values worth trying wherever a string goes: ids that exist, and the classics. */
export interface Pools {
  ids: string[];
}

const MAX_DEPTH = 4;

const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom('', ' ', '\u0000', '..', '../../etc/passwd', '%00', 'null', '-1', '1e308', 'x'.repeat(2000), '\u202e', '🙂'),
  fc.constantFrom(-1, 0, 2 ** 31, 2 ** 53, -(2 ** 63), 1.5, Number.MAX_SAFE_INTEGER),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.constant(JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": 1}}') as unknown),
);

/** A value for `schema`, usually valid, sometimes junk. */
export function valueFor(schema: JsonSchema | undefined, pools: Pools, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > MAX_DEPTH) return junk;
  // Junk is rarer deeper down, so that most bodies get past their first wrong field and reach the handler.
  return fc.oneof({ weight: 6 * (depth + 1), arbitrary: shapedValue(schema, pools, depth) }, { weight: 1, arbitrary: junk });
}

function shapedValue(schema: JsonSchema, pools: Pools, depth: number): fc.Arbitrary<unknown> {
  const base = baseValue(schema, pools, depth);
  return schema.nullable === true ? fc.oneof(base, fc.constant(null)) : base;
}

function baseValue(schema: JsonSchema, pools: Pools, depth: number): fc.Arbitrary<unknown> {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return fc.constantFrom(...(schema.enum as unknown[]));
  if ('const' in schema) return fc.constant(schema.const);
  for (const key of ['anyOf', 'oneOf'] as const) {
    const options = schema[key];
    // Beside a type, oneOf only constrains (`code` xor `files`): build the typed value.
    if (schema.type !== undefined) break;
    if (Array.isArray(options) && options.length > 0) {
      return fc.oneof(...(options as JsonSchema[]).map((o) => valueFor(o, pools, depth + 1)));
    }
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 0) {
    // Good enough for fuzzing: the members' properties together.
    const merged = (schema.allOf as JsonSchema[]).reduce<JsonSchema>(
      (acc, part) => ({
        ...acc,
        ...part,
        properties: { ...(acc.properties as object), ...(part.properties as object) },
        required: [...((acc.required as string[]) ?? []), ...((part.required as string[]) ?? [])],
      }),
      {},
    );
    return baseValue(merged, pools, depth);
  }
  const type = Array.isArray(schema.type) ? (schema.type as string[])[0] : (schema.type as string | undefined);
  switch (type) {
    case 'string':
      return stringValue(schema, pools);
    case 'integer':
      return integerValue(schema);
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true, min: num(schema.minimum, -1e12), max: num(schema.maximum, 1e12) });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = (schema.items as JsonSchema | undefined) ?? {};
      const minLength = Math.min(num(schema.minItems, 0), 4);
      return fc.array(valueFor(items, pools, depth + 1), { minLength, maxLength: Math.max(minLength, Math.min(num(schema.maxItems, 4), 4)) });
    }
    case 'object':
      return objectValue(schema, pools, depth);
    default:
      return schema.properties ? objectValue(schema, pools, depth) : fc.jsonValue({ maxDepth: 2 });
  }
}

function num(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function stringValue(schema: JsonSchema, pools: Pools): fc.Arbitrary<string> {
  const minLength = num(schema.minLength, 0);
  const maxLength = Math.max(minLength, Math.min(num(schema.maxLength, 64), 256));
  const sized = fc.string({ minLength, maxLength });
  switch (schema.format) {
    case 'date-time':
      return fc.date({ min: new Date(0), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString());
    case 'uri':
    case 'url':
      return fc.webUrl();
    case 'email':
      return fc.emailAddress();
  }
  const options: fc.Arbitrary<string>[] = [sized];
  if (pools.ids.length > 0) options.push(fc.constantFrom(...pools.ids));
  if (typeof schema.pattern === 'string') {
    // Patterns name ids, checksums, host:port… : real ids and look-alikes reach past validation.
    const matching = stringsMatching(schema.pattern);
    if (matching) options.push(matching.map((s) => s.slice(0, maxLength)));
  }
  return fc.oneof(...options);
}

/** Strings of the document's own patterns (ours, not a tenant's); none where stringMatching cannot (lookaheads). */
function stringsMatching(pattern: string): fc.Arbitrary<string> | undefined {
  try {
    return fc.stringMatching(new RegExp(pattern));
  } catch {
    return undefined;
  }
}

function integerValue(schema: JsonSchema): fc.Arbitrary<number> {
  const min = Math.max(num(schema.minimum, -(2 ** 40)), Number.MIN_SAFE_INTEGER);
  const max = Math.min(num(schema.maximum, 2 ** 40), Number.MAX_SAFE_INTEGER);
  const edges = [min, max, 0, 1, -1].filter((v) => v >= min && v <= max);
  return fc.oneof(fc.integer({ min: Math.max(min, -(2 ** 31)), max: Math.min(max, 2 ** 31) }), fc.constantFrom(...edges), fc.integer({ min, max }));
}

function objectValue(schema: JsonSchema, pools: Pools, depth: number): fc.Arbitrary<unknown> {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = ((schema.required ?? []) as string[]).filter((k) => k in properties);
  const record = fc.record(
    Object.fromEntries(Object.entries(properties).map(([k, s]) => [k, valueFor(s, pools, depth + 1)])),
    { requiredKeys: required },
  );
  // Now and then a key the schema does not know, or a required one left out.
  return fc.oneof(
    { weight: 8, arbitrary: record },
    { weight: 1, arbitrary: fc.tuple(record, fc.string({ maxLength: 12 }), junk).map(([r, k, v]) => ({ ...(r as object), [k]: v })) },
    { weight: 1, arbitrary: record.map((r) => Object.fromEntries(Object.entries(r as object).slice(1))) },
  );
}
