import type { PlaneEvents } from './plane-events.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { ServiceDeps } from './context.js';
import type { StorageSettings } from './artifact-storage.js';
import { DEFAULT_WATCHER_LIMITS, type JobWatchHub, type WatcherLimits } from './job-watchers.js';
import type { LiveOutput } from './live-output.js';
import type { Notifier } from './notifier.js';

/** Timings and bounds of the fleet, with units in every name. */
export interface FleetSettings {
  /** How often runners heartbeat. @default 1000 */
  heartbeatIntervalMs: number;
  /** A lease not extended for this long is lost. @default 15000 */
  leaseTtlMs: number;
  /** No heartbeat for this long: degraded (no new placements). @default 3000 */
  degradedAfterMs: number;
  /** No heartbeat for this long: offline (its work is recovered). @default 10000 */
  offlineAfterMs: number;
  /** Attempts a job gets before it fails with system_error. @default 3 */
  maxAttempts: number;
  /** Upper bound of `POST /v1/jobs?wait=true`. @default 60000 */
  maxWaitMs: number;
  /** The largest request body the control plane accepts; runners keep their batches under it. @default 1048576 */
  maxRequestBytes: number;
  /**
   * A waiting lease poll looks at the queue again this often even without a wake-up, so a lost wake-up
   * costs at most this much. Wake-ups (new work, a finished, canceled or requeued job) answer at once.
   * @default 5000
   */
  leaseRecheckIntervalMs: number;
}

export const DEFAULT_FLEET_SETTINGS: FleetSettings = {
  heartbeatIntervalMs: 1000,
  leaseTtlMs: 15_000,
  degradedAfterMs: 3000,
  offlineAfterMs: 10_000,
  maxAttempts: 3,
  maxWaitMs: 60_000,
  maxRequestBytes: 1024 * 1024,
  leaseRecheckIntervalMs: 5000,
};

/** Bounds of job event streams (per replica), with units in every name. */
export interface StreamSettings extends WatcherLimits {
  /** Output kept per job for watchers that join late. @default 1048576 */
  liveOutputMaxBytesPerJob: number;
  /** Bytes one watcher may hold that its connection has not taken; past it, its output is cut. @default 262144 */
  watcherBufferBytes: number;
  /** A watcher whose connection takes nothing for this long is closed. @default 30000 */
  stallTimeoutMs: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
  ...DEFAULT_WATCHER_LIMITS,
  liveOutputMaxBytesPerJob: 1024 * 1024,
  watcherBufferBytes: 256 * 1024,
  stallTimeoutMs: 30_000,
};

/** What the job and fleet use cases need beyond the store and clock. */
export interface JobDeps extends ServiceDeps {
  notifier: Notifier;
  artifacts: ArtifactStore;
  fleet: FleetSettings;
  /** Artifact storage quota and retention. */
  storage: StorageSettings;
  liveOutput: LiveOutput;
  streams: StreamSettings;
  /** The event-stream watchers of this replica, one shared source per job. */
  watchers: JobWatchHub;
  /** Aborted when the control plane shuts down: every long poll and stream answers and ends. */
  shutdown: AbortSignal;
  /** What happened (jobs ended, leases, requeues, runner states): metrics and the log listen. */
  events: PlaneEvents;
  /** Seals jobs' `secret_env` at rest (AES-256-GCM); without it, secret_env is refused. */
  secretsKey?: Buffer | undefined;
}
