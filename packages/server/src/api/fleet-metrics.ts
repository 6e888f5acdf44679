import { Gauge, type Registry } from 'prom-client';
import type { RunnerPoolStats } from '@kiln/core';
import type { JobDeps } from '../services/job-deps.js';
import { jobCountsByStatus, sandboxCountsByStatus } from '../store/job-counts.js';

/**
 * Gauges of the queue and the fleet, read from the database when Prometheus scrapes, so every replica
 * reports the same truth: jobs and sandboxes by status (from the counts their triggers keep: cheap at any
 * size), runners by status, and the runners' warm pools.
 */
export function registerFleetMetrics(registry: Registry, deps: JobDeps): void {
  // Runners are few; sandboxes (one per job attempt ever run) are counted by their triggers' table.
  const countBy = async (table: 'runner_nodes') =>
    deps.store.db
      .selectFrom(table)
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('status')
      .execute();
  new Gauge({
    name: 'kiln_jobs',
    help: 'Jobs by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of await jobCountsByStatus(deps.store)) this.set({ status: row.status }, row.n);
    },
  });
  new Gauge({
    name: 'kiln_runners',
    help: 'Runner nodes by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of await countBy('runner_nodes')) this.set({ status: row.status }, Number(row.n));
    },
  });
  // The runners' warm pools, as each live runner's last heartbeat reported them.
  const pools = async () => {
    const rows = await deps.store.db
      .selectFrom('runner_nodes')
      .select(['name', 'pool_stats'])
      .where('status', '!=', 'offline')
      .where('pool_stats', 'is not', null)
      .execute();
    return rows.map((r) => ({ runner: r.name, stats: JSON.parse(r.pool_stats!) as RunnerPoolStats }));
  };
  new Gauge({
    name: 'kiln_runner_pool_sandboxes',
    help: 'Pre-built sandboxes in runners\' warm pools, by runner, shape and state (ready, building)',
    labelNames: ['runner', 'shape', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { runner, stats } of await pools()) {
        for (const s of stats.shapes) {
          this.set({ runner, shape: s.shape, state: 'ready' }, s.ready);
          this.set({ runner, shape: s.shape, state: 'building' }, s.building);
        }
      }
    },
  });
  new Gauge({
    name: 'kiln_runner_pool_requests',
    help: 'Requests for a sandbox of a shape since the runner started wanting it: taken from the warm pool, or missed (built on the spot)',
    labelNames: ['runner', 'shape', 'outcome'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { runner, stats } of await pools()) {
        for (const s of stats.shapes) {
          this.set({ runner, shape: s.shape, outcome: 'taken' }, s.taken);
          this.set({ runner, shape: s.shape, outcome: 'missed' }, s.missed);
        }
      }
    },
  });
  new Gauge({
    name: 'kiln_runner_pool_memory_bytes',
    help: 'Memory limits the sandboxes in a runner\'s warm pool carry (what they are promised once taken)',
    labelNames: ['runner'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { runner, stats } of await pools()) this.set({ runner }, stats.held_memory_bytes);
    },
  });
  new Gauge({
    name: 'kiln_sandboxes',
    help: 'Sandbox instances by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of await sandboxCountsByStatus(deps.store)) this.set({ status: row.status }, row.n);
    },
  });
}
