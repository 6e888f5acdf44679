import semver from 'semver';

/**
 * Language versions as runners report them are dotted numbers, not always semver (`5.9`, `1.07.1`,
 * `2022.12`): they are compared and matched through their semver reading (`5.9.0`, `1.7.1`).
 */
function asSemver(version: string): semver.SemVer | null {
  return semver.coerce(version, { loose: true });
}

/** Highest first; versions without a numeric reading last, by text. */
export function compareVersionsDescending(a: string, b: string): number {
  const sa = asSemver(a);
  const sb = asSemver(b);
  if (sa && sb) return semver.rcompare(sa, sb) || a.localeCompare(b);
  if (sa) return -1;
  if (sb) return 1;
  return a.localeCompare(b);
}

/** True when `requested` is a version or range kiln understands: `3.11.2`, `3.x`, `3`, `*`, `>=3.10 <4`, `^1.2`. */
export function isVersionRequest(requested: string): boolean {
  return semver.validRange(requested, { loose: true }) !== null;
}

/**
 * The version a request for `requested` runs on among `offered`: the offered version spelled exactly so,
 * else the highest one in the range (`3` and `3.x` are ranges; `*` is the highest of all). undefined
 * when none is offered or the range is not one.
 */
export function resolveVersion(requested: string, offered: readonly string[]): string | undefined {
  if (offered.includes(requested)) return requested;
  const range = semver.validRange(requested, { loose: true });
  if (range === null) return undefined;
  return [...offered].sort(compareVersionsDescending).find((v) => {
    const s = asSemver(v);
    return s !== null && semver.satisfies(s, range, { loose: true });
  });
}
