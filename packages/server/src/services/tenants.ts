import { DEFAULT_POLICY_NAME, DEFAULT_RULESET, newId, toRfc3339, type Tenant, type TenantStatus } from '@kiln/core';
import { tenantMachine } from '../domain/machines.js';
import { assertTransition } from '../domain/state-machine.js';
import { insertPolicy } from '../store/policies.js';
import { stopOwnerWork, type StoppedWorkResult } from '../store/owner-work.js';
import { findTenant, insertTenant, listTenants, setTenantStatus } from '../store/tenants.js';
import { KilnError } from '@kiln/core';
import { clampRulesetToQuota } from '../domain/quota.js';
import { requireOperator, notFound } from './access.js';
import { auditSuccess } from './audit.js';
import { actorIdOf, type Principal, type ServiceDeps } from './context.js';
import { quotaDefaultsOf } from './quotas.js';
import { announceStoppedWork } from './stop-work.js';

/**
 * Creates a tenant and its `default` policy (DEFAULT_RULESET lowered to the configured quota, which a
 * new tenant has), in one transaction with the audit.
 */
export async function createTenant(deps: ServiceDeps, principal: Principal, input: { name: string }): Promise<Tenant> {
  requireOperator(principal);
  const nowMs = deps.clock.nowMs();
  const tenant: Tenant = { id: newId('tenant', nowMs), name: input.name, status: tenantMachine.initial, created_at: toRfc3339(nowMs) };
  return deps.store.transaction(async (tx) => {
    await insertTenant(tx, tenant);
    const policyId = newId('policy', nowMs);
    await insertPolicy(
      tx,
      {
        id: policyId,
        tenant_id: tenant.id,
        name: DEFAULT_POLICY_NAME,
        version: 1,
        ruleset: clampRulesetToQuota(DEFAULT_RULESET, quotaDefaultsOf(deps)),
        created_at: tenant.created_at,
        updated_at: tenant.created_at,
      },
      actorIdOf(principal),
    );
    await auditSuccess(deps, tx, principal, {
      action: 'tenant.create',
      resource_type: 'tenant',
      resource_id: tenant.id,
      tenant_id: tenant.id,
      details: { name: tenant.name, default_policy_id: policyId },
    });
    return tenant;
  });
}

export async function getTenant(deps: ServiceDeps, principal: Principal, id: string): Promise<Tenant> {
  requireOperator(principal);
  const tenant = await findTenant(deps.store, id);
  if (!tenant) throw notFound('tenant', id);
  return tenant;
}

export async function listAllTenants(deps: ServiceDeps, principal: Principal, query: { limit: number; cursor?: string | undefined }) {
  requireOperator(principal);
  return listTenants(deps.store, query);
}

/**
 * Suspends or resumes a tenant. Suspending cancels its queued jobs, stops its running ones (their
 * runners are woken and kill the sandboxes within a second) and terminates its sessions and services,
 * in the same transaction as the change and its one audit event (with the counts). While suspended, the
 * claim never hands out its work. Asking for the state it is already in is INVALID_TRANSITION.
 */
export async function changeTenantStatus(
  deps: ServiceDeps,
  principal: Principal,
  id: string,
  status: TenantStatus,
): Promise<Tenant> {
  requireOperator(principal);
  let stopped: StoppedWorkResult | undefined;
  const changed = await deps.store.transaction(async (tx) => {
    const tenant = await findTenant(tx, id);
    if (!tenant) throw notFound('tenant', id);
    assertTransition(tenantMachine, tenant.status, status, id);
    if (!(await setTenantStatus(tx, id, tenant.status, status))) {
      throw new KilnError('CONFLICT', `tenant ${id} changed while this request ran; read it again`);
    }
    const nowIso = toRfc3339(deps.clock.nowMs());
    stopped = status === 'suspended' ? await stopOwnerWork(tx, { tenantId: id }, 'tenant_suspended', nowIso) : undefined;
    await auditSuccess(deps, tx, principal, {
      action: status === 'suspended' ? 'tenant.suspend' : 'tenant.resume',
      resource_type: 'tenant',
      resource_id: id,
      tenant_id: id,
      details: { from: tenant.status, to: status, ...stopped?.effects },
    });
    return { ...tenant, status };
  });
  if (stopped) announceStoppedWork(deps, stopped);
  return changed;
}
