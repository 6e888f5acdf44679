import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { WalCheckpointer } from './wal-checkpointer.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-wal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function serving(name: string) {
  const file = join(dir, name);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('create table t (id integer primary key, body blob not null)');
  return { db, file };
}

/** 8 MiB of committed rows, one small transaction each, as a serving control plane writes them. */
function write8MiB(db: Database.Database) {
  const insert = db.prepare('insert into t (body) values (?)');
  const body = Buffer.alloc(4096, 7);
  for (let i = 0; i < 2048; i++) insert.run(body);
}

async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  expect(check(), what).toBe(true);
}

describe('the WAL checkpointer', () => {
  it('folds the log into the database file from its worker, the serving connection checkpointing nothing itself', async () => {
    const { db, file } = serving('folded.db');
    const checkpointer = new WalCheckpointer(db, file, 20);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    write8MiB(db);
    // Only a checkpoint writes pages into the database file; the serving connection does none now.
    await until(() => statSync(file).size >= 8 * 1024 * 1024, 'the worker copied the committed pages into the database file');
    await checkpointer.close();
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    expect(db.prepare('select count(*) as n from t').get()).toEqual({ n: 2048 });
    db.close();
  });

  it('gives checkpoints back to the serving connection when its worker fails', async () => {
    const { db } = serving('fallback.db');
    // A worker that cannot open its database dies at once: the serving connection must not be left
    // with checkpoints off and a log that grows without bound.
    new WalCheckpointer(db, join(dir, 'no-such-dir', 'x.db'), 20);
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === 1000, 'automatic checkpoints are back on');
    db.close();
  });
});
