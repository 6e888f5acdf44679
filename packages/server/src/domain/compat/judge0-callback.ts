/** A Judge0 callback's states: claimed by one replica before it is sent, then sent or failed. */
export type Judge0CallbackState = 'pending' | 'sending' | 'sent' | 'failed';

const TRANSITIONS: Readonly<Record<Judge0CallbackState, readonly Judge0CallbackState[]>> = {
  pending: ['sending'],
  sending: ['sent', 'failed'],
  sent: [],
  failed: [],
};

/** Throws on a move the table does not allow: a bug, never a silent write. */
export function assertCallbackTransition(from: Judge0CallbackState, to: Judge0CallbackState): void {
  if (!TRANSITIONS[from].includes(to)) throw new Error(`judge0 callback cannot go from ${from} to ${to}`);
}
