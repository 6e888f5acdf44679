import type { LanguageOffer } from '@kiln/core';
import semver from 'semver';

/**
 * How Piston names kiln's languages: Piston's own language name, its `runtime` where Piston gives one
 * (javascript on node, c and c++ on gcc, csharp on mono), the aliases Piston's packages declare, and
 * whether the language has a compile stage. Languages not listed are offered under kiln's name.
 */
interface PistonNaming {
  language: string;
  runtime?: string;
  aliases: readonly string[];
  compiled: boolean;
}

const PISTON_NAMES: Readonly<Record<string, PistonNaming>> = {
  python: { language: 'python', aliases: ['py', 'py3', 'python3', 'python3.x'], compiled: false },
  node: { language: 'javascript', runtime: 'node', aliases: ['node-javascript', 'node-js', 'js', 'node'], compiled: false },
  typescript: { language: 'typescript', aliases: ['ts', 'node-ts', 'tsc'], compiled: true },
  bash: { language: 'bash', aliases: [], compiled: false },
  sh: { language: 'sh', aliases: ['dash'], compiled: false },
  c: { language: 'c', runtime: 'gcc', aliases: ['gcc'], compiled: true },
  cpp: { language: 'c++', runtime: 'gcc', aliases: ['cpp', 'g++'], compiled: true },
  java: { language: 'java', aliases: [], compiled: true },
  perl: { language: 'perl', aliases: ['pl'], compiled: false },
  tcl: { language: 'tcl', aliases: ['tclsh'], compiled: false },
  ruby: { language: 'ruby', aliases: ['ruby3', 'rb'], compiled: false },
  php: { language: 'php', aliases: [], compiled: false },
  lua: { language: 'lua', aliases: [], compiled: false },
  go: { language: 'go', aliases: ['golang'], compiled: true },
  rust: { language: 'rust', aliases: ['rs'], compiled: true },
  kotlin: { language: 'kotlin', aliases: ['kt'], compiled: true },
  csharp: { language: 'csharp', runtime: 'mono', aliases: ['mono', 'mono-csharp', 'mono-c#', 'mono-cs', 'c#', 'cs'], compiled: true },
  haskell: { language: 'haskell', aliases: ['hs'], compiled: true },
  ocaml: { language: 'ocaml', aliases: ['ml'], compiled: true },
  scala: { language: 'scala', aliases: ['sc'], compiled: true },
  fortran: { language: 'fortran', aliases: ['fortran', 'f90'], compiled: true },
  pascal: { language: 'pascal', aliases: ['freepascal', 'pp', 'pas'], compiled: true },
  d: { language: 'd', aliases: ['dmd'], compiled: true },
  nim: { language: 'nim', aliases: [], compiled: true },
  crystal: { language: 'crystal', aliases: ['cr'], compiled: true },
  erlang: { language: 'erlang', aliases: ['erl', 'escript'], compiled: false },
  elixir: { language: 'elixir', aliases: ['exs'], compiled: false },
  clojure: { language: 'clojure', aliases: ['clj'], compiled: false },
  groovy: { language: 'groovy', aliases: ['gvy'], compiled: false },
  r: { language: 'rscript', aliases: ['r'], compiled: false },
  prolog: { language: 'prolog', aliases: ['plg'], compiled: false },
  cobol: { language: 'cobol', aliases: ['cob'], compiled: true },
  nasm: { language: 'nasm', aliases: ['asm', 'nasm32'], compiled: true },
  octave: { language: 'octave', aliases: ['matlab', 'm'], compiled: false },
  sqlite: { language: 'sqlite3', aliases: ['sqlite', 'sql'], compiled: false },
  racket: { language: 'racket', aliases: ['rkt'], compiled: false },
  scheme: { language: 'scheme', aliases: ['scm', 'guile'], compiled: false },
  commonlisp: { language: 'lisp', aliases: ['cl', 'sbcl', 'commonlisp'], compiled: false },
  awk: { language: 'awk', aliases: ['gawk'], compiled: false },
  bc: { language: 'bc', aliases: [], compiled: false },
  julia: { language: 'julia', aliases: ['jl'], compiled: false },
  zig: { language: 'zig', aliases: [], compiled: true },
  fsharp: { language: 'fsharp', aliases: ['fs', 'f#'], compiled: true },
  basic: { language: 'basic', aliases: ['freebasic', 'fbc', 'bas'], compiled: true },
};

/** One entry of Piston's `GET /runtimes`, and the kiln language and version it runs on. */
export interface PistonRuntime {
  language: string;
  version: string;
  aliases: string[];
  runtime?: string;
  kilnLanguage: string;
  compiled: boolean;
}

/**
 * Piston's runtimes for what the fleet offers (one per language and version), with the aliases the
 * catalog advertises (`aliases` on an offer, when runners send it) added to Piston's own. An alias that
 * is another offered language's name is left out, so every name resolves to one language.
 */
export function pistonRuntimes(offers: readonly LanguageOffer[]): PistonRuntime[] {
  const taken = new Set<string>();
  for (const offer of offers) taken.add(PISTON_NAMES[offer.name]?.language ?? offer.name);
  const runtimes: PistonRuntime[] = [];
  for (const offer of offers) {
    const naming = PISTON_NAMES[offer.name];
    const language = naming?.language ?? offer.name;
    const advertised = (offer as { aliases?: readonly string[] }).aliases ?? [];
    const aliases = [...new Set([...(naming?.aliases ?? []), ...advertised, offer.name])].filter((a) => a !== language && !taken.has(a));
    for (const version of offer.versions.length > 0 ? offer.versions : ['0.0.0']) {
      runtimes.push({
        language,
        version,
        aliases,
        ...(naming?.runtime ? { runtime: naming.runtime } : {}),
        kilnLanguage: offer.name,
        compiled: naming?.compiled ?? false,
      });
    }
  }
  return runtimes;
}

/** A version as semver, or undefined when it has no dotted number at all. */
const asSemver = (v: string) => semver.valid(v) ?? semver.coerce(v, { loose: true })?.version;

/**
 * The runtime Piston would pick: the language by name or alias, the highest version that satisfies
 * `version` (a semver range such as `3.x`, `^18`, `>=3.10 <4`, an exact version, or `*`).
 */
export function resolvePistonRuntime(runtimes: readonly PistonRuntime[], language: string, version: string): PistonRuntime | undefined {
  const name = language.toLowerCase();
  const candidates = runtimes.filter((r) => r.language === name || r.aliases.includes(name));
  let best: PistonRuntime | undefined;
  for (const runtime of candidates) {
    const v = asSemver(runtime.version);
    const matches = version === '*' || runtime.version === version || (v !== undefined && semver.satisfies(v, version, { loose: true }));
    if (!matches) continue;
    if (!best || (v !== undefined && semver.gt(v, asSemver(best.version) ?? '0.0.0'))) best = runtime;
  }
  return best;
}
