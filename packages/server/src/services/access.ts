import { KilnError } from '@kiln/core';
import type { Principal } from './context.js';

/** Authorisation checks the use cases start with. Each throws the error the API answers. */

export function requireOperator(principal: Principal): void {
  if (principal.kind !== 'operator') throw new KilnError('FORBIDDEN', 'this needs the operator key');
}

/** A tenant admin (tenant key); returns the tenant. */
export function requireTenantAdmin(principal: Principal): string {
  if (principal.kind === 'tenant') return principal.tenantId;
  if (principal.kind === 'agent') throw new KilnError('FORBIDDEN', 'this needs a tenant admin key, not an agent key');
  throw new KilnError('FORBIDDEN', 'this needs a tenant key (the operator acts on tenants, not inside them)');
}

/** A tenant admin or one of its agents; returns the tenant. */
export function requireTenantMember(principal: Principal): string {
  if (principal.kind === 'tenant' || principal.kind === 'agent') return principal.tenantId;
  throw new KilnError('FORBIDDEN', 'this needs a tenant or agent key');
}

/** New work and changes are refused while the caller's tenant is suspended. */
export function requireTenantActive(principal: Principal): void {
  if ((principal.kind === 'tenant' || principal.kind === 'agent') && principal.tenantStatus !== 'active') {
    throw new KilnError('TENANT_SUSPENDED', `tenant ${principal.tenantId} is suspended; the operator can resume it`);
  }
}

export function notFound(what: string, id: string): KilnError {
  return new KilnError('NOT_FOUND', `${what} ${id} does not exist`);
}
