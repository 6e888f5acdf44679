import type { Limits } from '@kiln/core';
import type { SandboxDriver } from '../sandbox/driver.js';
import { LANGUAGES, parseVersion, type LanguageDefinition } from './catalog.js';

export interface DetectedLanguage {
  name: string;
  version: string;
}

/** Generous enough for a JVM to print its version, small enough that a broken runtime cannot stall start-up. */
const DETECT_LIMITS: Limits = {
  cpu_time_ms: 10_000,
  wall_time_ms: 20_000,
  memory_bytes: 512 * 1024 * 1024,
  pids: 64,
  output_bytes: 64 * 1024,
  file_size_bytes: 1024 * 1024,
  disk_bytes: 16 * 1024 * 1024,
};

const cache = new WeakMap<SandboxDriver, Promise<DetectedLanguage[]>>();

async function detectOne(driver: SandboxDriver, language: LanguageDefinition): Promise<DetectedLanguage | undefined> {
  const result = await driver.run({ command: [...language.versionCommand], limits: DETECT_LIMITS, collect: [] });
  if (result.verdict !== 'ok') return undefined;
  const version = parseVersion(`${result.stdout.toString('utf8')}\n${result.stderr.toString('utf8')}`);
  return version ? { name: language.name, version } : undefined;
}

/**
 * The catalog's languages that work in this driver's sandboxes, each with its version, found by running
 * the version command INSIDE a sandbox (two at a time). Cached per driver: the runner asks once.
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
      return out.filter((d): d is DetectedLanguage => d !== undefined);
    })();
    cache.set(driver, found);
    // A failed detection is not cached, so the next call tries again.
    found.catch(() => cache.delete(driver));
  }
  return found;
}
