import type { ArtifactRules } from './types.js';

export interface CandidateFile {
  path: string;
  size_bytes: number;
}

export interface Selection<T extends CandidateFile> {
  accepted: T[];
  rejected: { name: string; size_bytes: number; reason: string }[];
}

/**
 * Applies a policy's artifact rules to collected files, in path order so the outcome is deterministic:
 * each file at most `max_bytes`, at most `max_count` files, at most `max_total_bytes` together.
 * Refused files are named with the reason; the job itself still ends normally.
 */
export function selectArtifacts<T extends CandidateFile>(files: T[], rules: ArtifactRules): Selection<T> {
  const accepted: T[] = [];
  const rejected: Selection<T>['rejected'] = [];
  let totalBytes = 0;
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    if (file.size_bytes > rules.max_bytes) {
      rejected.push({ name: file.path, size_bytes: file.size_bytes, reason: `larger than artifacts.max_bytes (${rules.max_bytes})` });
    } else if (accepted.length >= rules.max_count) {
      rejected.push({ name: file.path, size_bytes: file.size_bytes, reason: `more than artifacts.max_count (${rules.max_count}) files` });
    } else if (totalBytes + file.size_bytes > rules.max_total_bytes) {
      rejected.push({
        name: file.path,
        size_bytes: file.size_bytes,
        reason: `would pass artifacts.max_total_bytes (${rules.max_total_bytes})`,
      });
    } else {
      accepted.push(file);
      totalBytes += file.size_bytes;
    }
  }
  return { accepted, rejected };
}

/**
 * Keeps a report's list of refused files bounded: the first `max` are named, the rest summed up in one
 * last entry, so a sandbox that writes thousands of files cannot make a report the control plane refuses.
 */
export function boundRejected(rejected: Selection<CandidateFile>['rejected'], max: number): Selection<CandidateFile>['rejected'] {
  if (rejected.length <= max) return rejected;
  const rest = rejected.slice(max);
  return [
    ...rejected.slice(0, max),
    {
      name: `${rest.length} more files`,
      size_bytes: rest.reduce((n, r) => n + r.size_bytes, 0),
      reason: `${rest.length} more files refused for the same limits (only the first ${max} are named)`,
    },
  ];
}
