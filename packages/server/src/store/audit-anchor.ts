import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { auditKeyFrom, type AuditCheckpoint, type AuditKey } from '../domain/audit-chain.js';

/**
 * Where signed checkpoints of the audit chains' heads are kept: outside the database, so a database
 * writer cannot roll them back along with the events.
 */
export interface AuditCheckpointLog {
  /** where they are (a file path), for verify's answer and log lines */
  readonly location: string;
  /** every chain's latest checkpoint; throws when the log exists but cannot be read */
  read(): Record<string, AuditCheckpoint>;
  write(checkpoints: Record<string, AuditCheckpoint>): void;
  /** whether the log was ever written (a new data dir starts one before its chains have events) */
  exists(): boolean;
}

/** What anchors the audit: the key events are signed with, and the checkpoints of each chain's head. */
export interface AuditAnchor {
  key: AuditKey;
  checkpoints: AuditCheckpointLog;
}

/** A JSON file (mode 0600), replaced atomically (write aside, then rename) so a crash never leaves half of one. */
export function fileCheckpointLog(file: string): AuditCheckpointLog {
  return {
    location: file,
    read() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw err;
      }
      const parsed = JSON.parse(text) as { version?: number; chains?: Record<string, AuditCheckpoint> };
      if (parsed.version !== 1 || typeof parsed.chains !== 'object' || parsed.chains === null) {
        throw new Error(`${file} is not a kiln audit checkpoint file`);
      }
      return parsed.chains;
    },
    write(checkpoints) {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const aside = `${file}.${process.pid}.tmp`;
      writeFileSync(aside, `${JSON.stringify({ version: 1, chains: checkpoints }, null, 1)}\n`, { mode: 0o600 });
      chmodSync(aside, 0o600);
      renameSync(aside, file);
    },
    exists: () => existsSync(file),
  };
}

/** Checkpoints in memory: for stores opened by tests and tools, which live no longer than the process. */
export function memoryCheckpointLog(): AuditCheckpointLog {
  let kept: Record<string, AuditCheckpoint> | undefined;
  return {
    location: 'memory',
    read: () => ({ ...kept }),
    write: (checkpoints) => {
      kept = { ...checkpoints };
    },
    exists: () => kept !== undefined,
  };
}

/** A random key and checkpoints in memory: what a store gets when it is opened without an anchor. */
export function ephemeralAuditAnchor(): AuditAnchor {
  return { key: auditKeyFrom(randomBytes(32).toString('base64url')), checkpoints: memoryCheckpointLog() };
}
