import { z } from 'zod';
import { defineRoute, type RouteSpec } from './route.js';

const whoamiSchema = z.object({
  kind: z.enum(['operator', 'tenant', 'agent']).describe('operator key, tenant admin key, or agent key'),
  tenant_id: z.string().nullable(),
  agent_id: z.string().nullable(),
  key_id: z.string().nullable().describe('null for the operator key (configured, not stored)'),
  tenant_status: z.string().nullable().describe('active or suspended; a suspended tenant may read but not write'),
});

/**
 * Who the presented key is: a client (the dashboard, an agent's tooling) learns its role without probing
 * routes it may not call, which would write refusals to the audit.
 */
export const whoamiRoutes: RouteSpec[] = [
  defineRoute({
    method: 'GET',
    url: '/v1/whoami',
    summary: 'The caller: its role (operator, tenant admin, agent), tenant, agent and key',
    tag: 'keys',
    auth: 'key',
    response: whoamiSchema,
    handler: async ({ principal }) => {
      if (principal.kind === 'tenant' || principal.kind === 'agent') {
        return {
          kind: principal.kind,
          tenant_id: principal.tenantId,
          agent_id: principal.kind === 'agent' ? principal.agentId : null,
          key_id: principal.keyId,
          tenant_status: principal.tenantStatus,
        };
      }
      return { kind: 'operator', tenant_id: null, agent_id: null, key_id: null, tenant_status: null };
    },
  }),
];
