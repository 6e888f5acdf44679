import type { JobSpec } from '@kiln/core';

export type ArtifactRules = JobSpec['artifacts'];
