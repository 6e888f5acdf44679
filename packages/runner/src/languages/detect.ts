import type { Limits, RunnerLanguage } from '@kiln/core';
import type { SandboxDriver } from '../sandbox/driver.js';
import { LANGUAGES, parseVersion, type LanguageDefinition } from './catalog/index.js';

/** A catalog toolchain found working in this driver's sandboxes, with the version it reported. */
export interface DetectedLanguage extends RunnerLanguage {
  definition: LanguageDefinition;
}

/** Generous enough for a JVM to print its version, small enough that a broken runtime cannot stall start-up. */
const DETECT_LIMITS: Limits = {
  cpu_time_ms: 20_000,
  wall_time_ms: 30_000,
  memory_bytes: 768 * 1024 * 1024,
  pids: 128,
  output_bytes: 64 * 1024,
  file_size_bytes: 16 * 1024 * 1024,
  disk_bytes: 32 * 1024 * 1024,
};

const cache = new WeakMap<SandboxDriver, Promise<DetectedLanguage[]>>();

async function detectOne(driver: SandboxDriver, language: LanguageDefinition): Promise<DetectedLanguage | undefined> {
  const result = await driver.run({
    command: [...language.versionCommand],
    limits: DETECT_LIMITS,
    collect: [],
    ...(language.env ? { env: { ...language.env } } : {}),
  });
  if (result.verdict !== 'ok') return undefined;
  const version = parseVersion(`${result.stdout.toString('utf8')}\n${result.stderr.toString('utf8')}`);
  if (!version) return undefined;
  return {
    name: language.name,
    version,
    aliases: [...language.aliases],
    ...(language.runtime ? { runtime: language.runtime } : {}),
    libraries: [...(language.libraries ?? [])],
    definition: language,
  };
}

/**
 * `KILN_LANGUAGES` (a comma-separated list of names or aliases), as the set-up and the runner read it:
 * undefined (all) when unset or empty.
 */
export function parseLanguageSelection(value: string | undefined): Set<string> | undefined {
  const names = (value ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  return names.length > 0 ? new Set(names) : undefined;
}

/**
 * The catalog's toolchains that work in this driver's sandboxes, each with its version, found by running
 * the version command INSIDE a sandbox (two at a time), in catalog order (a language's default first).
 * Two toolchains of one language that report the same version are one offer: the first is kept.
 * Cached per driver: the runner asks once.
 */
export function detectLanguages(driver: SandboxDriver): Promise<DetectedLanguage[]> {
  let found = cache.get(driver);
  if (!found) {
    found = (async () => {
      const out: (DetectedLanguage | undefined)[] = new Array(LANGUAGES.length);
      let next = 0;
      const worker = async () => {
        while (next < LANGUAGES.length) {
          const i = next++;
          out[i] = await detectOne(driver, LANGUAGES[i] as LanguageDefinition);
        }
      };
      await Promise.all([worker(), worker()]);
      const seen = new Set<string>();
      return out.filter((d): d is DetectedLanguage => {
        if (d === undefined || seen.has(`${d.name} ${d.version}`)) return false;
        seen.add(`${d.name} ${d.version}`);
        return true;
      });
    })();
    cache.set(driver, found);
    // A failed detection is not cached, so the next call tries again.
    found.catch(() => cache.delete(driver));
  }
  return found;
}

/** What a runner advertises of what it detected (the protocol's shape: no catalog internals). */
export function advertisedLanguages(detected: readonly DetectedLanguage[]): RunnerLanguage[] {
  return detected.map(({ definition: _definition, ...offer }) => offer);
}

/**
 * The detected toolchain a job runs on: its language's default when it asks for no version, else the
 * one whose version is exactly the one asked for (the control plane resolves ranges to an offered
 * version before the job is queued and places it only on a runner that offers it).
 */
export function pickToolchain(detected: readonly DetectedLanguage[], name: string, version: string | null): DetectedLanguage | undefined {
  const ofName = detected.filter((d) => d.name === name || d.aliases.includes(name));
  return version === null ? ofName[0] : ofName.find((d) => d.version === version);
}
