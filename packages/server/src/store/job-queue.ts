import { sql } from 'kysely';
import { precompiled } from './precompiled.js';
import type { DbHandle, TxHandle } from './store.js';

/**
 * What the fair claim (`claimJobs` in jobs.ts) reads of the queue. Every read is a few index seeks
 * (partial indexes on the queued jobs: `jobs_queued_in_order` on tenant_id, requested_at, id, migration
 * 0019; `jobs_queued_by_tenant_version` on tenant_id, language, coalesce(language_version, ''),
 * coalesce(zone, ''), requested_at, id, migration 0017), so its cost does not grow with the number of
 * jobs a tenant has queued. The queries spell `status = 'queued'` and the coalesces literally, as the
 * indexes do: that is how both planners know the partial index applies.
 */

/** The oldest queued job of a tenant that a runner can take, as much of it as the cap check needs. */
export interface QueueHead {
  id: string;
  requested_at: string;
  max_running_jobs: number;
  /**
   * The read saw the tenant's whole queue and nothing after this job that the runner could take: once
   * it is claimed, the claim need not read this tenant's queue again.
   */
  lastForRunner?: boolean;
}

/**
 * Where a runner can run work: the languages it offers, the versions of each (a job that resolved to a
 * version runs only where that version is offered; one without runs on any), and its zone (a zoned job
 * runs only in its zone).
 */
export interface RunnerReach {
  languages: string[];
  versions?: Readonly<Record<string, readonly string[]>>;
  zone: string | null;
}

/**
 * The active tenants that have queued work, in round-robin order: least recently served first (the
 * lowest `last_served_turn`; never served is 0), then by id. The tenants are found by a skip scan over
 * the index (one seek per tenant with queued work, never a read of its queue), so a tenant with 20,000
 * queued jobs costs what a tenant with one does.
 */
export async function tenantsInTurnOrder(h: DbHandle): Promise<{ ids: string[]; lastTurn: number }> {
  // `order by tenant_id, language` is the partial index's own order: no other index gives it, so the
  // planner cannot walk jobs_by_tenant_status (tenant_id, status) through other tenants' finished jobs.
  // The highest turn handed out so far comes along (index tenants_by_served_turn): no second statement.
  const { rows } = await sql<{ id: string; top: number | string | null }>`
    with recursive queued (tenant_id) as (
      select (select tenant_id from jobs where status = 'queued' order by tenant_id, language limit 1)
      union all
      select (
        select j.tenant_id from jobs j where j.status = 'queued' and j.tenant_id > q.tenant_id
        order by j.tenant_id, j.language limit 1)
      from queued q where q.tenant_id is not null
    )
    select t.id, (select max(last_served_turn) from tenants) as top from queued q join tenants t on t.id = q.tenant_id
    where t.status = 'active'
    order by t.last_served_turn, t.id`.execute(h.db);
  return { ids: rows.map((r) => r.id), lastTurn: Number(rows[0]?.top ?? 0) };
}

/** How many of a tenant's oldest queued jobs the claim reads in one seek before it walks by offer. */
const HEAD_WINDOW = 8;

interface HeadCandidate extends QueueHead {
  language: string;
  language_version: string | null;
  zone: string | null;
  /** 1 unless the job's agent is disabled (its queued jobs are being canceled) */
  runnable: number | string;
}

/**
 * A tenant's oldest queued job that this runner can take (its language, no version or one it offers, no
 * zone or the runner's), of an agent that is not disabled, leaving out `exclude`. Disabling an agent
 * cancels its queued jobs; one a submission racing the disable still queued is passed over here, never
 * run. The common case is one seek: the oldest few of the tenant's queue (index jobs_queued_in_order,
 * migration 0019), of which the first this runner can take is the answer. Only when all of those are
 * for other runners does the claim walk the queue by what this runner offers.
 */
export async function queueHead(h: DbHandle, tenantId: string, reach: RunnerReach, exclude: readonly string[] = []): Promise<QueueHead | undefined> {
  const skip = exclude.length > 0 ? sql`and j.id not in (${sql.join([...exclude])})` : sql``;
  const { rows } = await sql<HeadCandidate>`
    select j.id, j.requested_at, j.max_running_jobs, j.language, j.language_version, j.zone,
      case when j.agent_id is null or exists (select 1 from agents a where a.id = j.agent_id and a.status = 'active')
        then 1 else 0 end as runnable
    from jobs j
    where j.status = 'queued' and j.tenant_id = ${tenantId} ${skip}
    order by j.requested_at, j.id limit ${HEAD_WINDOW}`.execute(h.db);
  const takeable = (job: HeadCandidate) => Number(job.runnable) === 1 && canRun(reach, job);
  const at = rows.findIndex(takeable);
  if (at >= 0) {
    const head = rows[at]!;
    const lastForRunner = rows.length < HEAD_WINDOW && !rows.slice(at + 1).some(takeable);
    return { id: head.id, requested_at: head.requested_at, max_running_jobs: Number(head.max_running_jobs), lastForRunner };
  }
  return rows.length < HEAD_WINDOW ? undefined : queueHeadByOffer(h, tenantId, reach, exclude);
}

/** Whether a runner of this reach may take the job: the same rule as the per-offer walk's rows. */
function canRun(reach: RunnerReach, job: Pick<HeadCandidate, 'language' | 'language_version' | 'zone'>): boolean {
  if (!reach.languages.includes(job.language)) return false;
  if (job.language_version !== null && !(reach.versions?.[job.language] ?? []).includes(job.language_version)) return false;
  return job.zone === null || job.zone === reach.zone;
}

/**
 * The per-offer walk: one seek per (language, version, zone) this runner offers in index
 * jobs_queued_by_tenant_version, so the jobs it cannot take (another language, version or zone) are
 * never read however many there are.
 */
async function queueHeadByOffer(h: DbHandle, tenantId: string, reach: RunnerReach, exclude: readonly string[]): Promise<QueueHead | undefined> {
  // One row per (language, version, zone): '' stands for "no version asked" and "no zone", as in the
  // index's coalesces.
  const zones = reach.zone === null ? [''] : ['', reach.zone];
  const rows = [...new Set(reach.languages)].flatMap((language) =>
    ['', ...new Set(reach.versions?.[language] ?? [])].flatMap((version) => zones.map((zone) => sql`(${language}, ${version}, ${zone})`)),
  );
  if (rows.length === 0) return undefined;
  const skip = exclude.length > 0 ? sql`and j.id not in (${sql.join([...exclude])})` : sql``;
  // One correlated seek per row: both planners plan it once whatever the number of rows. Written with
  // the sql tag, since the query builder takes milliseconds to assemble this shape.
  const result = await sql<QueueHead>`
    with reach (language, version, zone) as (values ${sql.join(rows)}),
    heads (id) as (
      select (
        select j.id from jobs j
        where j.status = 'queued' and j.tenant_id = ${tenantId} and j.language = reach.language
          and coalesce(j.language_version, '') = reach.version and coalesce(j.zone, '') = reach.zone
          and (j.agent_id is null or exists (select 1 from agents a where a.id = j.agent_id and a.status = 'active'))
          ${skip}
        order by j.requested_at, j.id limit 1)
      from reach
    )
    select jobs.id, jobs.requested_at, jobs.max_running_jobs from heads join jobs on jobs.id = heads.id
    order by jobs.requested_at, jobs.id limit 1`.execute(h.db);
  return result.rows[0];
}

/** How many of the tenant's jobs run now (index jobs_by_tenant_status: at most its cap is read). */
export async function runningJobCount(h: DbHandle, tenantId: string): Promise<number> {
  const [row] = (await runningOf(h, tenantId)).rows;
  return Number(row?.n ?? 0);
}

const runningOf = precompiled<[tenantId: string], { n: number | string }>(
  (db, tenantId) =>
    db
      .selectFrom('jobs')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('status', '=', 'running'),
  1,
);

/**
 * Locks an active tenant's row for the rest of the transaction (PostgreSQL), re-reading its status:
 * a tenant suspended meanwhile is refused. `wait: false` skips a row another transaction holds. The lock
 * is FOR NO KEY UPDATE: it excludes other claims and a status change, not the foreign-key checks of the
 * tenant's submissions, which go on while its jobs are claimed.
 */
export async function lockActiveTenant(tx: TxHandle, tenantId: string, wait: boolean): Promise<boolean> {
  const query = tx.db.selectFrom('tenants').select(['id', 'status']).where('id', '=', tenantId).forNoKeyUpdate();
  const row = await (wait ? query : query.skipLocked()).executeTakeFirst();
  return row?.status === 'active';
}

export async function recordServedTurn(tx: TxHandle, tenantId: string, turn: number): Promise<void> {
  await servedTurn(tx, turn, tenantId);
}

const servedTurn = precompiled<[turn: number, tenantId: string], never>(
  (db, turn, tenantId) => db.updateTable('tenants').set({ last_served_turn: turn }).where('id', '=', tenantId),
  2,
);
