import { COMPILED } from './compiled.js';
import type { LanguageDefinition } from './define.js';
import { DOTNET } from './dotnet.js';
import { FUNCTIONAL } from './functional.js';
import { JVM } from './jvm.js';
import { SCRIPTING } from './scripting.js';
import { WEB } from './web.js';

export * from './define.js';
export { PYTHON_LIBRARIES } from './scripting.js';
export { NODE_LIBRARIES } from './web.js';

/**
 * Every toolchain the catalog knows, by family. A language may appear more than once (c through gcc 12,
 * gcc 11 and clang 14–16): the first of a name is its default, the one an unversioned request gets.
 */
export const LANGUAGES: readonly LanguageDefinition[] = [...SCRIPTING, ...WEB, ...COMPILED, ...JVM, ...DOTNET, ...FUNCTIONAL];

const BY_NAME = new Map<string, LanguageDefinition>();
for (const l of LANGUAGES) if (!BY_NAME.has(l.name)) BY_NAME.set(l.name, l);
const BY_ALIAS = new Map<string, string>();
for (const l of LANGUAGES) for (const a of l.aliases) if (!BY_NAME.has(a) && !BY_ALIAS.has(a)) BY_ALIAS.set(a, l.name);

/** The catalog's name for `nameOrAlias` (`py` → `python`), or undefined. */
export function canonicalLanguage(nameOrAlias: string): string | undefined {
  return BY_NAME.has(nameOrAlias) ? nameOrAlias : BY_ALIAS.get(nameOrAlias);
}

/** The default catalog entry for a name or alias, or undefined. */
export function findLanguage(nameOrAlias: string): LanguageDefinition | undefined {
  const name = canonicalLanguage(nameOrAlias);
  return name === undefined ? undefined : BY_NAME.get(name);
}

/** Every entry of one language (its toolchains), default first. */
export function languageVariants(name: string): LanguageDefinition[] {
  return LANGUAGES.filter((l) => l.name === name);
}
