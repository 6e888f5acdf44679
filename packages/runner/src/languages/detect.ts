import { createHash } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { Limits, RunnerLanguage } from '@kiln/core';
import type { SandboxDriver } from '../sandbox/driver.js';
import { runtimeSubdir } from '../sandbox/runtime-dir.js';
import { SANDBOX_ETC_ENTRIES } from '../sandbox/sandbox-etc.js';
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

function toDetected(language: LanguageDefinition, version: string): DetectedLanguage {
  return {
    name: language.name,
    version,
    aliases: [...language.aliases],
    ...(language.runtime ? { runtime: language.runtime } : {}),
    libraries: [...(language.libraries ?? [])],
    definition: language,
  };
}

async function detectOne(driver: SandboxDriver, language: LanguageDefinition): Promise<DetectedLanguage | undefined> {
  const result = await driver.run({
    command: [...language.versionCommand],
    limits: DETECT_LIMITS,
    collect: [],
    ...(language.env ? { env: { ...language.env } } : {}),
  });
  if (result.verdict !== 'ok') return undefined;
  const version = parseVersion(`${result.stdout.toString('utf8')}\n${result.stderr.toString('utf8')}`);
  return version ? toDetected(language, version) : undefined;
}

/**
 * Where the last detection on this host is kept, named by everything it depends on: the catalog's
 * version commands, the sandbox's /etc and the state of the installed software (dpkg's database and the
 * bin folders change whenever a package is installed or removed). A runner start then costs one file read instead of a
 * sandbox per toolchain (about 15 s for the whole catalog on 2 cores).
 */
function detectionCacheFile(): string | undefined {
  const key = createHash('sha256');
  for (const l of LANGUAGES) key.update(`${l.name}\0${l.runtime ?? ''}\0${l.versionCommand.join('\0')}\n`);
  // What the sandbox's /etc holds decides what starts in it as much as what is installed.
  const sources = [...SANDBOX_ETC_ENTRIES.map(([src]) => src), '/var/lib/dpkg/status', '/usr/bin', '/usr/local/bin'];
  for (const path of sources) {
    try {
      const st = statSync(path);
      key.update(`${path}:${st.mtimeMs}:${st.size}\n`);
    } catch {
      key.update(`${path}:absent\n`);
    }
  }
  try {
    return `${runtimeSubdir('languages', 0o755)}/${key.digest('hex').slice(0, 16)}.json`;
  } catch {
    return undefined;
  }
}

type CachedDetection = { index: number; version: string }[];

function readCachedDetection(file: string): DetectedLanguage[] | undefined {
  try {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as CachedDetection;
    return cached.map(({ index, version }) => toDetected(LANGUAGES[index] as LanguageDefinition, version));
  } catch {
    return undefined;
  }
}

function writeCachedDetection(file: string, detected: readonly DetectedLanguage[]): void {
  const cached: CachedDetection = detected.map((d) => ({ index: LANGUAGES.indexOf(d.definition), version: d.version }));
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(cached), { mode: 0o644 });
    renameSync(tmp, file);
  } catch {
    // A cache that cannot be written only costs the next start a detection.
  }
}

async function detectInSandboxes(driver: SandboxDriver): Promise<DetectedLanguage[]> {
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
}

/**
 * The catalog's toolchains that work in this driver's sandboxes, each with its version, found by running
 * the version command INSIDE a sandbox (two at a time), in catalog order (a language's default first).
 * Two toolchains of one language that report the same version are one offer: the first is kept.
 * Cached per driver (the runner asks once) and per host state on disk (see detectionCacheFile); `fresh`
 * skips the disk.
 */
export function detectLanguages(driver: SandboxDriver, options: { fresh?: boolean } = {}): Promise<DetectedLanguage[]> {
  let found = options.fresh ? undefined : cache.get(driver);
  if (!found) {
    found = (async () => {
      const file = detectionCacheFile();
      const cached = file && !options.fresh ? readCachedDetection(file) : undefined;
      if (cached) return cached;
      const detected = await detectInSandboxes(driver);
      if (file) writeCachedDetection(file, detected);
      return detected;
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
