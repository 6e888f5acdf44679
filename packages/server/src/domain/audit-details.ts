/**
 * What the audit stores of caller-controlled text: control characters escaped, every string and the
 * whole details bounded. File names, request details and error messages reach the audit from tenants and
 * sandboxes; raw, a C0/C1 escape or a bidi override in them rewrites what an operator's terminal or
 * dashboard shows (a name that reads as another, a log line that erases the one before).
 */

/** C0 controls, DEL, C1 controls, bidi marks, embeddings, overrides and isolates, line/paragraph separators. */
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Longest string kept in an event (after escaping); longer ones are cut and say by how much. */
export const AUDIT_STRING_MAX_CHARS = 512;
/** Largest details object kept (canonical JSON); a larger one is replaced by a note of its size. */
export const AUDIT_DETAILS_MAX_CHARS = 8192;
const MAX_DEPTH = 4;
const MAX_ENTRIES = 64;

function escapeCharacter(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** `text` with unsafe characters written as `\u001b`, at most `maxChars` long. */
export function escapeAuditText(text: string, maxChars = AUDIT_STRING_MAX_CHARS): string {
  // Escape only a prefix: a megabyte-long name costs no more than a short one.
  const escaped = text.slice(0, maxChars).replace(UNSAFE_CHARACTERS, escapeCharacter);
  if (escaped.length <= maxChars && text.length <= maxChars) return escaped;
  const cut = escaped.slice(0, maxChars);
  return `${cut}…[${text.length} chars]`;
}

function sanitizeValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return escapeAuditText(value);
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value !== 'object') return escapeAuditText(String(value));
  if (depth >= MAX_DEPTH) return '[nested too deep]';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ENTRIES).map((v) => sanitizeValue(v, depth + 1));
    if (value.length > MAX_ENTRIES) items.push(`[${value.length - MAX_ENTRIES} more]`);
    return items;
  }
  const out: Record<string, unknown> = {};
  const entries = Object.entries(value as Record<string, unknown>);
  for (const [k, v] of entries.slice(0, MAX_ENTRIES)) out[escapeAuditText(k, 64)] = sanitizeValue(v, depth + 1);
  if (entries.length > MAX_ENTRIES) out['[more]'] = entries.length - MAX_ENTRIES;
  return out;
}

/** Details as stored: every string escaped and bounded, nesting and entry counts bounded, the whole bounded. */
export function sanitizeAuditDetails(details: Record<string, unknown>): Record<string, unknown> {
  const clean = sanitizeValue(details, 0) as Record<string, unknown>;
  const size = JSON.stringify(clean).length;
  if (size <= AUDIT_DETAILS_MAX_CHARS) return clean;
  return { details_truncated: true, details_chars: size, keys: Object.keys(clean).slice(0, 16) };
}
