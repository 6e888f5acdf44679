import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type LogEvent, type Transaction } from 'kysely';
import pg from 'pg';
import { ephemeralAuditAnchor, type AuditAnchor } from './audit-anchor.js';
import { migrate, type DbDialect } from './migrations.js';
import type { Database } from './schema.js';
import { WalCheckpointer } from './wal-checkpointer.js';

export type { DbDialect } from './migrations.js';

/**
 * What every store function takes: a Kysely handle (the store's own, or a transaction) and the dialect,
 * for the few statements that differ (row locks exist only on PostgreSQL; SQLite has one writer).
 */
export interface DbHandle {
  readonly db: Kysely<Database>;
  readonly dialect: DbDialect;
}

/** A handle inside a transaction. */
export interface TxHandle extends DbHandle {
  readonly db: Transaction<Database>;
  /** the audit's key and checkpoints (kept outside the database): events appended here are signed with it */
  readonly audit: AuditAnchor;
}

/** The database of the control plane. */
export interface Store extends DbHandle {
  /** the audit's key and checkpoints, kept outside the database */
  readonly audit: AuditAnchor;
  /** Runs `fn` in one transaction; it commits when `fn` resolves and rolls back when it throws. */
  transaction<T>(fn: (tx: TxHandle) => Promise<T>): Promise<T>;
  /** Resolves when the database answers (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export type StoreOptions = (
  | {
      kind: 'sqlite';
      /** a file path, or `:memory:` */
      file: string;
      busyTimeoutMs?: number;
      /** checkpoint the WAL from a worker thread (store/wal-checkpointer.ts): what a serving control plane wants */
      backgroundCheckpoints?: boolean;
    }
  | { kind: 'postgres'; url: string; poolSize?: number }
) & {
  /** Called with each statement's SQL and parameters as it runs (the hot-path tests count and EXPLAIN them). */
  onQuery?: (sql: string, parameters: readonly unknown[]) => void;
};

// PostgreSQL returns bigint (int8) and numeric as strings; kiln's numbers stay within 2^53.
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/**
 * Kysely prepares every query anew, and on SQLite preparing costs more than running a small query.
 * The same few hundred statements repeat for the process's life, so keep them prepared (bounded).
 */
function withStatementCache(sqlite: SqliteDatabase.Database, maxStatements = 1000) {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => sqlite.close(),
    prepare: (text: string) => {
      let statement = cache.get(text);
      if (!statement) {
        if (cache.size >= maxStatements) cache.clear();
        statement = sqlite.prepare(text);
        cache.set(text, statement);
      }
      return statement;
    },
  };
}

/**
 * Opens the database and runs pending migrations. `audit` is the key and checkpoint log the audit is
 * anchored with; without one, a random key and in-memory checkpoints, for tests and tools that live no
 * longer than the events they write (a chain signed with another key fails verify).
 */
export async function openStore(options: StoreOptions, audit: AuditAnchor = ephemeralAuditAnchor()): Promise<Store> {
  let db: Kysely<Database>;
  let dialect: DbDialect;
  let checkpointer: WalCheckpointer | undefined;
  const onQuery = options.onQuery;
  const log = onQuery
    ? {
        log: (event: LogEvent) => {
          if (event.level === 'query') onQuery(event.query.sql, event.query.parameters);
        },
      }
    : {};
  if (options.kind === 'sqlite') {
    dialect = 'sqlite';
    if (options.file !== ':memory:') mkdirSync(dirname(options.file), { recursive: true });
    const sqlite = new SqliteDatabase(options.file, { timeout: options.busyTimeoutMs ?? 5000 });
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('cache_size = -65536');
    if (options.backgroundCheckpoints && options.file !== ':memory:') checkpointer = new WalCheckpointer(sqlite, options.file);
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }), ...log });
  } else {
    dialect = 'postgres';
    const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10, types: pgTypes });
    // An idle client's error (server restart) must not crash the process; the next query reports it.
    pool.on('error', () => {});
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), ...log });
  }
  try {
    await migrate(db, dialect);
  } catch (err) {
    await checkpointer?.close();
    await db.destroy();
    throw err;
  }
  return {
    db,
    dialect,
    audit,
    transaction: (fn) => db.transaction().execute((trx) => fn({ db: trx, dialect, audit })),
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    close: async () => {
      await checkpointer?.close();
      await db.destroy();
    },
  };
}

/** Chooses the database from the configuration: PostgreSQL when a URL is given, else SQLite in the data dir. */
export function storeOptionsFor(config: { databaseUrl?: string | undefined; sqliteFile: string }): StoreOptions {
  if (config.databaseUrl) return { kind: 'postgres', url: config.databaseUrl };
  return { kind: 'sqlite', file: config.sqliteFile, backgroundCheckpoints: true };
}
