import type { LanguageOffer } from '@kiln/core';
import type { DbHandle } from './store.js';

/**
 * The languages the fleet offers: the union over runners that are not offline. A runner's `languages`
 * column is a JSON array of `{name, version}` (a bare name string is accepted too).
 */
export async function listFleetLanguages(h: DbHandle): Promise<LanguageOffer[]> {
  const rows = await h.db.selectFrom('runner_nodes').select(['languages']).where('status', '!=', 'offline').execute();
  const offers = new Map<string, { versions: Set<string>; runners: number }>();
  for (const row of rows) {
    let entries: unknown;
    try {
      entries = JSON.parse(row.languages);
    } catch {
      continue;
    }
    if (!Array.isArray(entries)) continue;
    const seen = new Set<string>();
    for (const entry of entries) {
      const name = typeof entry === 'string' ? entry : (entry as { name?: unknown })?.name;
      if (typeof name !== 'string') continue;
      const version = typeof entry === 'object' && entry !== null ? (entry as { version?: unknown }).version : undefined;
      const offer = offers.get(name) ?? { versions: new Set<string>(), runners: 0 };
      if (typeof version === 'string') offer.versions.add(version);
      if (!seen.has(name)) offer.runners += 1;
      seen.add(name);
      offers.set(name, offer);
    }
  }
  return [...offers.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, o]) => ({ name, versions: [...o.versions].sort(), runners: o.runners }));
}
