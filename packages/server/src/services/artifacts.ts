import type { Readable } from 'node:stream';
import type { Artifact } from '@kiln/core';
import { KilnError } from '@kiln/core';
import { deleteArtifactRows } from '../store/artifact-storage.js';
import { decodeCursor, page } from '../store/pagination.js';
import type { ArtifactsTable } from '../store/schema.js';
import type { DbHandle } from '../store/store.js';
import { notFound, requireTenantActive, requireTenantMember } from './access.js';
import { collectBlobs } from './artifact-storage.js';
import { auditSuccess } from './audit.js';
import type { Principal } from './context.js';
import type { JobDeps } from './job-deps.js';

type ArtifactRow = ArtifactsTable;

/**
 * An artifact as the API answers it. `storage_uri` names a host path or a bucket: only the operator sees
 * it; tenant and agent keys get the artifact without it (they download through the content route).
 */
export function artifactView(row: ArtifactRow, principal: Principal): Artifact {
  const view = { ...row, size_bytes: Number(row.size_bytes) } as Artifact;
  if (principal.kind !== 'operator') delete (view as Partial<Artifact>).storage_uri;
  return view;
}

/**
 * An artifact the caller may see: any for the operator, its tenant's for a tenant admin, its own jobs'
 * for an agent. Anything else answers 404 exactly like a missing artifact.
 */
async function findArtifact(h: DbHandle, principal: Principal, id: string): Promise<ArtifactRow> {
  const tenantId = principal.kind === 'operator' ? undefined : requireTenantMember(principal);
  const row = await h.db.selectFrom('artifacts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || (tenantId !== undefined && row.tenant_id !== tenantId)) throw notFound('artifact', id);
  if (principal.kind === 'agent' && !(await ownedByAgent(h, principal.agentId, row.owner_type, row.owner_id))) {
    throw notFound('artifact', id);
  }
  return row;
}

/** Whether the artifact's owner (a job, or a session step through its session) belongs to this agent. */
async function ownedByAgent(h: DbHandle, agentId: string, ownerType: string, ownerId: string): Promise<boolean> {
  if (ownerType === 'session_step') {
    const session = await h.db
      .selectFrom('session_steps as st')
      .innerJoin('sessions as s', 's.id', 'st.session_id')
      .select('s.agent_id')
      .where('st.id', '=', ownerId)
      .executeTakeFirst();
    return session?.agent_id === agentId;
  }
  if (ownerType !== 'job') return false;
  const job = await h.db.selectFrom('jobs').select('agent_id').where('id', '=', ownerId).executeTakeFirst();
  return job?.agent_id === agentId;
}

export async function getTenantArtifact(deps: JobDeps, principal: Principal, id: string): Promise<Artifact> {
  return artifactView(await findArtifact(deps.store, principal, id), principal);
}

export async function listTenantArtifacts(
  deps: JobDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined; owner_type?: string | undefined; owner_id?: string | undefined },
) {
  const tenantId = principal.kind === 'operator' ? undefined : requireTenantMember(principal);
  if (query.owner_id !== undefined && query.owner_type === undefined) {
    throw new KilnError('VALIDATION_FAILED', 'owner_id needs owner_type (job, session_step or workflow_step)', {
      field: 'query.owner_type',
    });
  }
  const after = decodeCursor(query.cursor);
  let q = deps.store.db.selectFrom('artifacts').selectAll().orderBy('id').limit(query.limit + 1);
  if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
  if (after) q = q.where('id', '>', after);
  if (query.owner_type === 'workflow_step') {
    // A workflow step owns what its job produced: the job's rows, listed under the step.
    const stepId = query.owner_id;
    q = q.where('owner_type', '=', 'job').where('owner_id', 'in', (eb) => {
      const steps = eb.selectFrom('workflow_steps').select((s) => s.fn.coalesce('job_id', s.val('')).as('job_id'));
      return stepId ? steps.where('id', '=', stepId) : steps.where('job_id', 'is not', null);
    });
  } else {
    if (query.owner_type) q = q.where('owner_type', '=', query.owner_type);
    if (query.owner_id) q = q.where('owner_id', '=', query.owner_id);
  }
  if (principal.kind === 'agent') {
    // An agent lists the artifacts of its own jobs and its own sessions' steps only.
    const agentId = principal.agentId;
    q = q.where((eb) =>
      eb.or([
        eb.and([
          eb('owner_type', '=', 'job'),
          eb('owner_id', 'in', eb.selectFrom('jobs').select('id').where('agent_id', '=', agentId).where('tenant_id', '=', tenantId!)),
        ]),
        eb.and([
          eb('owner_type', '=', 'session_step'),
          eb(
            'owner_id',
            'in',
            eb
              .selectFrom('session_steps as st')
              .innerJoin('sessions as s', 's.id', 'st.session_id')
              .select('st.id')
              .where('s.agent_id', '=', agentId)
              .where('s.tenant_id', '=', tenantId!),
          ),
        ]),
      ]),
    );
  }
  const result = page(await q.execute(), query.limit);
  return { items: result.items.map((row) => artifactView(row, principal)), next_cursor: result.next_cursor };
}

/** The artifact and a stream of its bytes, checked against its checksum as they are read. Tenant keys only. */
export async function openTenantArtifact(deps: JobDeps, principal: Principal, id: string): Promise<{ artifact: Artifact; body: Readable }> {
  requireTenantMember(principal);
  const row = await findArtifact(deps.store, principal, id);
  return { artifact: artifactView(row, principal), body: await deps.artifacts.open(row.storage_uri) };
}

/**
 * Deletes an artifact: its row goes, its bytes leave the tenant's storage account, and its blob leaves
 * the store unless another artifact has the same content. A second delete answers 404. Agents delete
 * their own jobs' and sessions' artifacts, tenant admins any of their tenant's, the operator any.
 */
export async function deleteArtifact(deps: JobDeps, principal: Principal, id: string): Promise<void> {
  requireTenantActive(principal);
  const deleted = await deps.store.transaction(async (tx) => {
    const row = await findArtifact(tx, principal, id);
    const rows = await deleteArtifactRows(tx, [row.id]);
    if (rows.length === 0) throw notFound('artifact', id);
    await auditSuccess(deps, tx, principal, {
      action: 'artifact.delete',
      resource_type: 'artifact',
      resource_id: id,
      tenant_id: row.tenant_id,
      details: { owner_type: row.owner_type, owner_id: row.owner_id, size_bytes: Number(row.size_bytes) },
    });
    return rows;
  });
  await collectBlobs(deps, deleted.map((r) => r.checksum));
}
