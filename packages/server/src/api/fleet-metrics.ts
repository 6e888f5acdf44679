import { Gauge, type Registry } from 'prom-client';
import type { JobDeps } from '../services/job-deps.js';

/**
 * Gauges of the queue and the fleet, read from the database when Prometheus scrapes, so every replica
 * reports the same truth: jobs by status, runners by status, live sandboxes.
 */
export function registerFleetMetrics(registry: Registry, deps: JobDeps): void {
  const countBy = async (table: 'jobs' | 'runner_nodes' | 'sandbox_instances') =>
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
      for (const row of await countBy('jobs')) this.set({ status: row.status }, Number(row.n));
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
  new Gauge({
    name: 'kiln_sandboxes',
    help: 'Sandbox instances by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of await countBy('sandbox_instances')) this.set({ status: row.status }, Number(row.n));
    },
  });
}
