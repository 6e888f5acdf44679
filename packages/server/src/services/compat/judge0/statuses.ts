/** Judge0's fourteen statuses, with its ids and descriptions. */
export const JUDGE0_STATUSES = [
  { id: 1, description: 'In Queue' },
  { id: 2, description: 'Processing' },
  { id: 3, description: 'Accepted' },
  { id: 4, description: 'Wrong Answer' },
  { id: 5, description: 'Time Limit Exceeded' },
  { id: 6, description: 'Compilation Error' },
  { id: 7, description: 'Runtime Error (SIGSEGV)' },
  { id: 8, description: 'Runtime Error (SIGXFSZ)' },
  { id: 9, description: 'Runtime Error (SIGFPE)' },
  { id: 10, description: 'Runtime Error (SIGABRT)' },
  { id: 11, description: 'Runtime Error (NZEC)' },
  { id: 12, description: 'Runtime Error (Other)' },
  { id: 13, description: 'Internal Error' },
  { id: 14, description: 'Exec Format Error' },
] as const;

export type Judge0StatusId = (typeof JUDGE0_STATUSES)[number]['id'];
export type Judge0Status = { id: Judge0StatusId; description: string };

export function judge0Status(id: Judge0StatusId): Judge0Status {
  return { ...JUDGE0_STATUSES[id - 1]! };
}

/**
 * Judge0's answer check: each line's trailing whitespace and the trailing blank lines are ignored, so
 * `"42\n"` matches `"42"` and `"a \nb\n\n"` matches `"a\nb"`; anything else must be identical.
 */
export function judge0AnswerMatches(stdout: string, expected: string): boolean {
  const normalize = (text: string) =>
    text
      .split('\n')
      .map((line) => line.trimEnd())
      .join('\n')
      .trimEnd();
  return normalize(stdout) === normalize(expected);
}
