import { describe, expect, it } from 'vitest';
import { checkStepReferences, nextMoves, resolvedNeeds, type StepState } from './plan.js';

const step = (name: string, status: StepState['status'], needs: string[] = [], continueOnFailure = false): StepState => ({
  name,
  status,
  needs,
  continueOnFailure,
  reason: null,
});

describe('nextMoves', () => {
  it('starts every pending step whose needs have ended, and only those', () => {
    const moves = nextMoves([step('a', 'succeeded'), step('b', 'pending', ['a']), step('c', 'pending', ['a']), step('d', 'pending', ['b', 'c'])]);
    expect(moves).toEqual({ start: ['b', 'c'], cancel: [] });
  });

  it('after a fatal failure starts nothing, cancels what is pending, and ends failed once running steps end', () => {
    const running = nextMoves([step('a', 'failed'), step('b', 'running'), step('c', 'pending', ['a'])]);
    expect(running.start).toEqual([]);
    expect(running.cancel.map((c) => c.name)).toEqual(['c']);
    expect(running.cancel[0]!.reason).toContain('step a failed');
    expect(running.end).toBeUndefined();
    const over = nextMoves([step('a', 'failed'), step('b', 'succeeded'), step('c', 'canceled', ['a'])]);
    expect(over.end?.status).toBe('failed');
  });

  it('goes on past a failure marked continue_on_failure and can succeed', () => {
    expect(nextMoves([step('a', 'failed', [], true), step('b', 'pending', ['a'])]).start).toEqual(['b']);
    expect(nextMoves([step('a', 'failed', [], true), step('b', 'succeeded', ['a'])]).end).toEqual({ status: 'succeeded', reason: null });
  });
});

describe('checkStepReferences and resolvedNeeds', () => {
  it('refuses a reference to a later or unknown step, and a repeated name, naming the index and field', () => {
    expect(checkStepReferences([{ name: 'a', needs: ['b'] }, { name: 'b' }])).toMatchObject({ index: 0, field: 'needs.0' });
    expect(checkStepReferences([{ name: 'a' }, { name: 'b', inputs: [{ step: 'b' }] }])).toMatchObject({ index: 1, field: 'inputs.0.step' });
    expect(checkStepReferences([{ name: 'a' }, { name: 'a' }])).toMatchObject({ index: 1, field: 'name' });
    expect(checkStepReferences([{ name: 'a' }, { name: 'b', needs: ['a'] }])).toBeUndefined();
  });

  it('makes a plain list sequential and adds the steps inputs come from', () => {
    const steps = [{ name: 'a' }, { name: 'b' }, { name: 'c', needs: [], inputs: [{ step: 'a' }] }];
    expect(resolvedNeeds(steps, 0)).toEqual([]);
    expect(resolvedNeeds(steps, 1)).toEqual(['a']);
    expect(resolvedNeeds(steps, 2)).toEqual(['a']);
  });
});
