import type { Agent } from '@kiln/core';
import { decodeCursor, page } from './pagination.js';
import { agentFromRow } from './rows.js';
import type { DbHandle } from './store.js';

export async function insertAgent(h: DbHandle, agent: Agent): Promise<void> {
  await h.db.insertInto('agents').values(agent).execute();
}

/** An agent of `tenantId`; another tenant's agent is undefined, exactly like a missing one. */
export async function findAgent(h: DbHandle, tenantId: string, id: string): Promise<Agent | undefined> {
  const row = await h.db
    .selectFrom('agents')
    .selectAll()
    .where('id', '=', id)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row && agentFromRow(row);
}

export async function listAgents(h: DbHandle, tenantId: string, opts: { limit: number; cursor?: string | undefined }) {
  const after = decodeCursor(opts.cursor);
  let q = h.db
    .selectFrom('agents')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id')
    .limit(opts.limit + 1);
  if (after) q = q.where('id', '>', after);
  return page((await q.execute()).map(agentFromRow), opts.limit);
}

/** Conditional status change; false when the agent was not in `from`. */
export async function setAgentStatus(h: DbHandle, id: string, from: string, to: string): Promise<boolean> {
  const result = await h.db
    .updateTable('agents')
    .set({ status: to })
    .where('id', '=', id)
    .where('status', '=', from)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
