import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

/**
 * Folds SQLite's write-ahead log back into the database file from a worker thread, so the control
 * plane's event loop never waits on a checkpoint. With SQLite's own automatic checkpoint the commit
 * that crosses 1,000 WAL pages copies them and fsyncs the file on the serving thread: measured at one
 * commit in 40 on a small job's path, up to 7 ms each, during which no request is served (issue 14).
 *
 * The worker has its own connection and runs a PASSIVE checkpoint (it never blocks a writer or a
 * reader) every `intervalMs`: 2 s, about as often as SQLite's 1,000 pages at 20 small jobs a second.
 * Oftener costs more than it saves: a page a job rewrites (an index's, the audit head's) is copied and
 * synced at every checkpoint it is dirty for (at 250 ms, the worker's CPU was 2 ms a job). Durability is
 * SQLite's: a checkpoint only copies committed pages. Should the worker fail, the serving connection
 * checkpoints by itself again, as before.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private closed = false;

  constructor(
    private readonly serving: SqliteDatabase.Database,
    file: string,
    intervalMs = 2000,
  ) {
    serving.pragma('wal_autocheckpoint = 0');
    // Code run as a worker: the same better-sqlite3 as the serving connection, resolved from here.
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, file, intervalMs } });
    this.worker.unref();
    const fallBack = () => {
      if (!this.closed) serving.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
    };
    this.worker.once('error', fallBack);
    this.worker.once('exit', fallBack);
  }

  /** Stops the worker; the serving connection's close checkpoints what is left. */
  async close(): Promise<void> {
    this.closed = true;
    await this.worker.terminate();
    this.serving.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
  }
}

/** SQLite's own default: a checkpoint by the committing connection once the WAL holds this many pages. */
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { timeout: 1000 });
// PASSIVE: copies what no reader still needs, waits for nobody, and is tried again at the next tick.
setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy or locked: the next tick tries again
  }
}, workerData.intervalMs);
`;
