import type { LanguageOffer } from '@kiln/core';
import { compareVersionsDescending } from '../domain/languages/versions.js';
import type { DbHandle } from './store.js';

interface OfferBuilder {
  versions: Map<string, string | null>;
  aliases: Set<string>;
  libraries: Set<string> | undefined;
  runners: number;
}

const stringsOf = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/**
 * The languages the fleet offers: the union over runners that are not offline, each version with its
 * toolchain, the aliases runners know it by, and the libraries EVERY runner that offers it has (a job
 * may land on any of them). A runner's `languages` column is a JSON array of `{name, version, aliases?,
 * runtime?, libraries?}` (a bare name string is accepted too, from older runners).
 */
export async function listFleetLanguages(h: DbHandle): Promise<readonly LanguageOffer[]> {
  const rows = await h.db.selectFrom('runner_nodes').select(['languages']).where('status', '!=', 'offline').execute();
  // Every submission asks, and the fleet's offers change only when a runner registers or goes offline:
  // the union is built again only when the columns read differ from the last ones (one entry kept,
  // compared column by column: no joined copy of every runner's catalog per submission).
  const columns = rows.map((r) => r.languages);
  if (lastUnion && sameColumns(lastUnion.columns, columns)) return lastUnion.offers;
  const offers = Object.freeze(unionOfOffers(rows));
  lastUnion = { columns, offers };
  return offers;
}

let lastUnion: { columns: readonly string[]; offers: readonly LanguageOffer[] } | undefined;

const sameColumns = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((column, i) => column === b[i]);

function unionOfOffers(rows: readonly { languages: string }[]): LanguageOffer[] {
  const offers = new Map<string, OfferBuilder>();
  for (const row of rows) {
    let entries: unknown;
    try {
      entries = JSON.parse(row.languages);
    } catch {
      continue;
    }
    if (!Array.isArray(entries)) continue;
    const librariesHere = new Map<string, Set<string>>();
    for (const entry of entries) {
      const e = (typeof entry === 'string' ? { name: entry } : entry) as Record<string, unknown> | null;
      const name = e?.name;
      if (typeof name !== 'string') continue;
      const offer = offers.get(name) ?? { versions: new Map(), aliases: new Set<string>(), libraries: undefined, runners: 0 };
      offers.set(name, offer);
      if (typeof e?.version === 'string' && !offer.versions.get(e.version)) {
        offer.versions.set(e.version, typeof e.runtime === 'string' ? e.runtime : null);
      }
      for (const a of stringsOf(e?.aliases)) offer.aliases.add(a);
      const here = librariesHere.get(name) ?? new Set<string>();
      for (const l of stringsOf(e?.libraries)) here.add(l);
      librariesHere.set(name, here);
    }
    for (const [name, here] of librariesHere) {
      const offer = offers.get(name) as OfferBuilder;
      offer.runners += 1;
      offer.libraries = offer.libraries === undefined ? here : new Set([...offer.libraries].filter((l) => here.has(l)));
    }
  }
  return [...offers.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, o]) => {
      const versions = [...o.versions.keys()].sort(compareVersionsDescending);
      return {
        name,
        versions,
        aliases: [...o.aliases].filter((a) => a !== name && !offers.has(a)).sort(),
        libraries: [...(o.libraries ?? [])].sort(),
        runtimes: versions.map((version) => ({ version, runtime: o.versions.get(version) ?? null })),
        runners: o.runners,
      };
    });
}

/** The offer a job's `language` names, by name or by alias. */
export function findOffer(offers: readonly LanguageOffer[], language: string): LanguageOffer | undefined {
  return offers.find((o) => o.name === language) ?? offers.find((o) => o.aliases.includes(language));
}
