import { KilnError } from '@kiln/core';

/**
 * A transition table: for each state, the states it may move to. Terminal states map to [].
 * Every state change of a stateful entity goes through `assertTransition`, so an illegal move is an
 * error (409 INVALID_TRANSITION), never a silent write.
 */
export interface StateMachine<S extends string> {
  /** The entity's name as the API spells it (`job`, `session_step`), used in error details. */
  readonly entity: string;
  readonly states: readonly S[];
  readonly initial: S;
  readonly transitions: Readonly<Record<S, readonly S[]>>;
}

export function defineMachine<S extends string>(machine: StateMachine<S>): StateMachine<S> {
  for (const from of machine.states) {
    for (const to of machine.transitions[from]) {
      if (!machine.states.includes(to)) throw new Error(`${machine.entity}: unknown state ${to}`);
    }
  }
  return machine;
}

export function canTransition<S extends string>(machine: StateMachine<S>, from: S, to: S): boolean {
  return machine.transitions[from]?.includes(to) ?? false;
}

/** Throws INVALID_TRANSITION unless `from → to` is in the table. */
export function assertTransition<S extends string>(machine: StateMachine<S>, from: S, to: S, id?: string): void {
  if (canTransition(machine, from, to)) return;
  const subject = id === undefined ? machine.entity : `${machine.entity} ${id}`;
  throw new KilnError('INVALID_TRANSITION', `${subject} cannot go from ${from} to ${to}`, {
    extra: { entity: machine.entity, from, to },
  });
}

/** The states from which `to` is reachable in one step (used by bulk updates such as suspension). */
export function sourcesOf<S extends string>(machine: StateMachine<S>, to: S): S[] {
  return machine.states.filter((from) => canTransition(machine, from, to));
}

export function isTerminal<S extends string>(machine: StateMachine<S>, state: S): boolean {
  return machine.transitions[state].length === 0;
}
