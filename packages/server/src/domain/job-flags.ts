/**
 * What a job is part of, fixed when the job is created (`jobs.flags`, migration 0022): the hot path
 * skips the lookups that would find nothing for most jobs — the workflow a step advances, the sealed
 * secrets a lease opens, the Judge0 submission whose callback a run's end may send.
 */
export const JobFlag = {
  workflowStep: 1,
  judge0Run: 2,
  secretEnv: 4,
} as const;
export type JobFlag = (typeof JobFlag)[keyof typeof JobFlag];

/** Whether a job may be `flag`: a row read without its flags (undefined) may be anything, so it is looked up. */
export function mayBe(flags: number | undefined, flag: JobFlag): boolean {
  return flags === undefined || (flags & flag) !== 0;
}
