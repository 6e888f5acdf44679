import { Counter, Gauge, type Registry } from 'prom-client';
import type { JobDeps } from '../services/job-deps.js';

/**
 * Live output and event streams of this replica: bytes of output some watcher did not get live, by
 * reason, and the watchers, shared sources and bytes they hold now.
 */
export function registerStreamMetrics(registry: Registry, deps: JobDeps): void {
  new Counter({
    name: 'kiln_live_output_dropped_bytes_total',
    help: 'Bytes of job output not delivered live (the stdout/stderr artifacts hold them), by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, bytes] of deps.liveOutput.lostBytesByReason()) this.inc({ reason }, bytes);
    },
  });
  new Gauge({
    name: 'kiln_stream_watchers',
    help: 'Job event streams open on this replica',
    registers: [registry],
    collect() {
      this.set(deps.watchers.watcherCount);
    },
  });
  new Gauge({
    name: 'kiln_stream_sources',
    help: 'Jobs watched on this replica (one shared subscription each)',
    registers: [registry],
    collect() {
      this.set(deps.watchers.sourceCount);
    },
  });
  new Gauge({
    name: 'kiln_stream_buffered_bytes',
    help: 'Bytes event-stream watchers hold in memory that their connections have not taken',
    registers: [registry],
    collect() {
      this.set(deps.watchers.bufferedBytes());
    },
  });
}
