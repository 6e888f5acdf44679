import type { Readable } from 'node:stream';
import type { Artifact } from '@kiln/core';
import { KilnError } from '@kiln/core';
import { decodeCursor, page } from '../store/pagination.js';
import { notFound, requireTenantMember } from './access.js';
import type { Principal } from './context.js';
import type { JobDeps } from './job-deps.js';

type ArtifactRow = Artifact;

async function findArtifact(deps: JobDeps, principal: Principal, id: string): Promise<ArtifactRow> {
  const tenantId = requireTenantMember(principal);
  const row = await deps.store.db.selectFrom('artifacts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || row.tenant_id !== tenantId) throw notFound('artifact', id);
  if (principal.kind === 'agent' && !(await ownedByAgent(deps, principal.agentId, row.owner_type, row.owner_id))) {
    throw notFound('artifact', id);
  }
  return row as ArtifactRow;
}

/** Whether the artifact's owner (a job today) belongs to this agent. */
async function ownedByAgent(deps: JobDeps, agentId: string, ownerType: string, ownerId: string): Promise<boolean> {
  if (ownerType !== 'job') return false;
  const job = await deps.store.db.selectFrom('jobs').select('agent_id').where('id', '=', ownerId).executeTakeFirst();
  return job?.agent_id === agentId;
}

export async function getTenantArtifact(deps: JobDeps, principal: Principal, id: string): Promise<Artifact> {
  return findArtifact(deps, principal, id);
}

export async function listTenantArtifacts(
  deps: JobDeps,
  principal: Principal,
  query: { limit: number; cursor?: string | undefined; owner_type?: string | undefined; owner_id?: string | undefined },
) {
  const tenantId = requireTenantMember(principal);
  if (query.owner_id !== undefined && query.owner_type === undefined) {
    throw new KilnError('VALIDATION_FAILED', 'owner_id needs owner_type (job, session_step or workflow_step)', {
      field: 'query.owner_type',
    });
  }
  const after = decodeCursor(query.cursor);
  let q = deps.store.db.selectFrom('artifacts').selectAll().where('tenant_id', '=', tenantId).orderBy('id').limit(query.limit + 1);
  if (after) q = q.where('id', '>', after);
  if (query.owner_type) q = q.where('owner_type', '=', query.owner_type);
  if (query.owner_id) q = q.where('owner_id', '=', query.owner_id);
  if (principal.kind === 'agent') {
    // An agent lists the artifacts of its own jobs only.
    const agentId = principal.agentId;
    q = q.where('owner_type', '=', 'job').where('owner_id', 'in', (eb) =>
      eb.selectFrom('jobs').select('id').where('agent_id', '=', agentId).where('tenant_id', '=', tenantId),
    );
  }
  return page((await q.execute()) as ArtifactRow[], query.limit);
}

/** The artifact and a stream of its bytes, checked against its checksum as they are read. */
export async function openTenantArtifact(deps: JobDeps, principal: Principal, id: string): Promise<{ artifact: Artifact; body: Readable }> {
  const artifact = await findArtifact(deps, principal, id);
  return { artifact, body: await deps.artifacts.open(artifact.storage_uri) };
}
