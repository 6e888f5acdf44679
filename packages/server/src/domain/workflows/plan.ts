import type { WorkflowStepState } from '../machines.js';

/**
 * What a workflow does next, decided from its steps alone (pure: the engine applies it in the
 * transaction of the job end that caused it, and the sweeper applies it again after a crash).
 */

export interface StepState {
  name: string;
  status: WorkflowStepState;
  /** the steps that must have ended before this one starts */
  needs: readonly string[];
  continueOnFailure: boolean;
  reason: string | null;
}

export interface NextMoves {
  /** pending steps whose needs have all ended: their jobs are created now */
  start: string[];
  /** pending steps that will never run, and why */
  cancel: { name: string; reason: string }[];
  /** set once every step has ended */
  end?: { status: 'succeeded' | 'failed'; reason: string | null };
}

const ENDED: ReadonlySet<WorkflowStepState> = new Set(['succeeded', 'failed', 'canceled']);

export function isStepEnded(status: WorkflowStepState): boolean {
  return ENDED.has(status);
}

/** A step that ended badly and did not say `continue_on_failure`: the workflow fails. */
function fatalFailure(steps: readonly StepState[]): StepState | undefined {
  return steps.find((s) => (s.status === 'failed' || s.status === 'canceled') && !s.continueOnFailure);
}

/**
 * The next moves: after a fatal failure nothing new starts and what is pending is canceled (steps
 * already running finish); otherwise every pending step whose needs have ended starts. When all steps
 * have ended the workflow ends: failed if a step failed fatally, succeeded otherwise.
 */
export function nextMoves(steps: readonly StepState[]): NextMoves {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const fatal = fatalFailure(steps);
  const moves: NextMoves = { start: [], cancel: [] };
  const pending = steps.filter((s) => s.status === 'pending');
  if (fatal) {
    const reason = `step ${fatal.name} ${fatal.status}${fatal.reason ? `: ${fatal.reason}` : ''}`;
    for (const s of pending) moves.cancel.push({ name: s.name, reason: `not run: ${reason}`.slice(0, 1024) });
  } else {
    for (const s of pending) {
      if (s.needs.every((n) => isStepEnded(byName.get(n)?.status ?? 'pending'))) moves.start.push(s.name);
    }
  }
  const stillOpen = steps.filter((s) => !isStepEnded(s.status) && !moves.cancel.some((c) => c.name === s.name));
  if (stillOpen.length === 0) {
    moves.end = fatal
      ? { status: 'failed', reason: `step ${fatal.name} ${fatal.status}${fatal.reason ? `: ${fatal.reason}` : ''}`.slice(0, 1024) }
      : { status: 'succeeded', reason: null };
  }
  return moves;
}

/**
 * Checks the steps' references before anything runs: `needs` and `inputs` name earlier steps only
 * (which also rules out cycles), names are unique. Answers the first problem as `{index, field, message}`.
 */
export function checkStepReferences(
  steps: readonly { name: string; needs?: readonly string[] | undefined; inputs?: readonly { step: string }[] | undefined }[],
): { index: number; field: string; message: string } | undefined {
  const earlier = new Set<string>();
  for (const [index, step] of steps.entries()) {
    if (earlier.has(step.name)) return { index, field: 'name', message: `another step is named ${step.name}; names must be unique` };
    for (const [i, need] of (step.needs ?? []).entries()) {
      if (!earlier.has(need)) {
        return { index, field: `needs.${i}`, message: `${need} is not an earlier step; a step may need only steps given before it` };
      }
    }
    for (const [i, input] of (step.inputs ?? []).entries()) {
      if (!earlier.has(input.step)) {
        return { index, field: `inputs.${i}.step`, message: `${input.step} is not an earlier step; inputs come from steps given before this one` };
      }
    }
    earlier.add(step.name);
  }
  return undefined;
}

/**
 * The steps a step waits for: those it names in `needs` and those it takes inputs from; with neither,
 * the step before it (so a plain list runs in order).
 */
export function resolvedNeeds(
  steps: readonly { name: string; needs?: readonly string[] | undefined; inputs?: readonly { step: string }[] | undefined }[],
  index: number,
): string[] {
  const step = steps[index]!;
  const fromInputs = (step.inputs ?? []).map((i) => i.step);
  if (step.needs === undefined) {
    if (index === 0) return [...new Set(fromInputs)];
    return [...new Set([steps[index - 1]!.name, ...fromInputs])];
  }
  return [...new Set([...step.needs, ...fromInputs])];
}
