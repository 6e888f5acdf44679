import type { Agent, ApiKey, AuditEvent, Policy, PolicyVersion, Tenant } from '@kiln/core';
import type { Ruleset } from '@kiln/core';
import type { Selectable } from 'kysely';
import type {
  AgentsTable,
  ApiKeysTable,
  AuditEventsTable,
  PoliciesTable,
  PolicyVersionsTable,
  TenantsTable,
} from './schema.js';

/** Row → API shape. JSON columns are text in the database (one encoding on both dialects). */

export function tenantFromRow(row: Selectable<TenantsTable>): Tenant {
  return { id: row.id, name: row.name, status: row.status as Tenant['status'], created_at: row.created_at };
}

export function agentFromRow(row: Selectable<AgentsTable>): Agent {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    type: row.type,
    status: row.status as Agent['status'],
    created_at: row.created_at,
  };
}

export function apiKeyFromRow(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    kind: row.kind as ApiKey['kind'],
    tenant_id: row.tenant_id,
    agent_id: row.agent_id,
    created_at: row.created_at,
    revoked_at: row.revoked_at,
    // The part of the key before its secret: enough to recognise a key, never enough to use it.
    prefix: `kiln_${row.kind}_${row.id}_`,
    last_used_at: row.last_used_at,
  };
}

export function policyFromRow(row: Selectable<PoliciesTable>): Policy {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    version: row.version,
    ruleset: JSON.parse(row.ruleset) as Ruleset,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

export function policyVersionFromRow(row: Selectable<PolicyVersionsTable>): PolicyVersion {
  return {
    policy_id: row.policy_id,
    version: row.version,
    ruleset: JSON.parse(row.ruleset) as Ruleset,
    created_at: row.created_at,
    created_by: row.created_by,
  };
}

export function auditEventFromRow(row: Selectable<AuditEventsTable>): AuditEvent {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    actor_id: row.actor_id,
    action: row.action,
    resource_type: row.resource_type,
    resource_id: row.resource_id,
    timestamp: row.timestamp,
    outcome: row.outcome as AuditEvent['outcome'],
    details: JSON.parse(row.details) as Record<string, unknown>,
    subject_agent_id: row.subject_agent_id,
    prev_hash: row.prev_hash,
    hash: row.hash,
  };
}
