import type { Policy, PolicyVersion } from '@kiln/core';
import { decodeCursor, page } from './pagination.js';
import { policyFromRow, policyVersionFromRow } from './rows.js';
import type { DbHandle, TxHandle } from './store.js';

/** Inserts a policy at version 1 and its first history row, in the caller's transaction. */
export async function insertPolicy(tx: TxHandle, policy: Policy, createdBy: string): Promise<void> {
  const ruleset = JSON.stringify(policy.ruleset);
  await tx.db.insertInto('policies').values({ ...policy, ruleset }).execute();
  await tx.db
    .insertInto('policy_versions')
    .values({ policy_id: policy.id, version: policy.version, ruleset, created_at: policy.created_at, created_by: createdBy })
    .execute();
}

export async function findPolicy(h: DbHandle, tenantId: string, id: string): Promise<Policy | undefined> {
  const row = await h.db
    .selectFrom('policies')
    .selectAll()
    .where('id', '=', id)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row && policyFromRow(row);
}

export async function findPolicyByName(h: DbHandle, tenantId: string, name: string): Promise<Policy | undefined> {
  const row = await h.db
    .selectFrom('policies')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('name', '=', name)
    .executeTakeFirst();
  return row && policyFromRow(row);
}

export async function listPolicies(h: DbHandle, tenantId: string, opts: { limit: number; cursor?: string | undefined }) {
  const after = decodeCursor(opts.cursor);
  let q = h.db
    .selectFrom('policies')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id')
    .limit(opts.limit + 1);
  if (after) q = q.where('id', '>', after);
  return page((await q.execute()).map(policyFromRow), opts.limit);
}

/**
 * Publishes `expectedVersion + 1`. The UPDATE only matches while the policy is still at
 * `expectedVersion`, so of several concurrent publishers exactly one moves it; the others get
 * `undefined` (the caller answers 409). The history row's primary key (policy_id, version) is a
 * second guard against a repeated version.
 */
export async function publishPolicyVersion(
  tx: TxHandle,
  args: { policyId: string; tenantId: string; expectedVersion: number; ruleset: unknown; nowIso: string; createdBy: string },
): Promise<Policy | undefined> {
  const ruleset = JSON.stringify(args.ruleset);
  const newVersion = args.expectedVersion + 1;
  const result = await tx.db
    .updateTable('policies')
    .set({ version: newVersion, ruleset, updated_at: args.nowIso })
    .where('id', '=', args.policyId)
    .where('tenant_id', '=', args.tenantId)
    .where('version', '=', args.expectedVersion)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return undefined;
  await tx.db
    .insertInto('policy_versions')
    .values({ policy_id: args.policyId, version: newVersion, ruleset, created_at: args.nowIso, created_by: args.createdBy })
    .execute();
  return findPolicy(tx, args.tenantId, args.policyId);
}

export async function listPolicyVersions(
  h: DbHandle,
  policyId: string,
  opts: { limit: number; cursor?: string | undefined },
): Promise<{ items: PolicyVersion[]; next_cursor: string | null }> {
  const after = decodeCursor(opts.cursor, (v) => /^[0-9]{1,9}$/.test(v));
  let q = h.db
    .selectFrom('policy_versions')
    .selectAll()
    .where('policy_id', '=', policyId)
    .orderBy('version')
    .limit(opts.limit + 1);
  if (after) q = q.where('version', '>', Number(after));
  return page((await q.execute()).map(policyVersionFromRow), opts.limit, (v) => String(v.version));
}
