import { KilnError } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import * as m from './machines.js';
import { assertTransition, isTerminal, sourcesOf, type StateMachine } from './state-machine.js';

// The legal moves, written out independently of the tables so a slip in either is caught.
const LEGAL: Record<string, string[]> = {
  tenant: ['active>suspended', 'suspended>active'],
  agent: ['active>disabled', 'disabled>active'],
  job: [
    'queued>running', 'queued>canceled', 'queued>failed',
    'running>succeeded', 'running>failed', 'running>canceled', 'running>queued',
  ],
  session: ['active>expired', 'active>terminated'],
  session_step: ['queued>running', 'queued>canceled', 'running>succeeded', 'running>failed', 'running>canceled'],
  workflow: ['queued>running', 'queued>canceled', 'running>succeeded', 'running>failed', 'running>canceled'],
  workflow_step: [
    'pending>queued', 'pending>failed', 'pending>canceled',
    'queued>running', 'queued>succeeded', 'queued>failed', 'queued>canceled',
    'running>queued', 'running>succeeded', 'running>failed', 'running>canceled',
  ],
  service: ['starting>running', 'starting>stopped', 'starting>terminated', 'running>stopped', 'running>terminated'],
  runner_node: ['healthy>degraded', 'healthy>offline', 'degraded>healthy', 'degraded>offline', 'offline>healthy'],
  sandbox_instance: [
    'provisioning>running', 'provisioning>terminated', 'provisioning>failed', 'running>terminated', 'running>failed',
  ],
};

describe.each(m.ALL_MACHINES.map((machine) => [machine.entity, machine as StateMachine<string>] as const))(
  'transition table of %s',
  (entity, machine) => {
    const legal = new Set(LEGAL[entity]);
    const pairs = machine.states.flatMap((from) => machine.states.map((to) => [from, to] as const));

    it('allows every legal transition', () => {
      expect(legal.size).toBeGreaterThan(0);
      for (const key of legal) {
        const [from, to] = key.split('>') as [string, string];
        expect(() => assertTransition(machine, from, to)).not.toThrow();
      }
    });

    it('refuses every illegal transition with INVALID_TRANSITION', () => {
      const illegal = pairs.filter(([from, to]) => !legal.has(`${from}>${to}`));
      expect(illegal.length).toBeGreaterThan(0);
      for (const [from, to] of illegal) {
        let caught: unknown;
        try {
          assertTransition(machine, from, to, 'x_1');
        } catch (err) {
          caught = err;
        }
        expect(caught, `${entity} ${from} → ${to}`).toBeInstanceOf(KilnError);
        expect((caught as KilnError).code).toBe('INVALID_TRANSITION');
        expect((caught as KilnError).status).toBe(409);
      }
    });

    it('has the initial state among its states and terminal states with no way out', () => {
      expect(machine.states).toContain(machine.initial);
      for (const state of machine.states) {
        const out = [...legal].filter((k) => k.startsWith(`${state}>`));
        expect(isTerminal(machine, state)).toBe(out.length === 0);
      }
    });
  },
);

describe('sourcesOf', () => {
  it('names the states a bulk change may start from', () => {
    expect(sourcesOf(m.jobMachine, 'canceled').sort()).toEqual(['queued', 'running']);
    expect(sourcesOf(m.serviceMachine, 'terminated').sort()).toEqual(['running', 'starting']);
  });
});
