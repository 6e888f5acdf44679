import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readdirSync, unlinkSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { constants } from 'node:os';
import { nativeHelperPath } from './native-paths.js';
import { runtimeSubdir } from './runtime-dir.js';
import {
  encodeControlHello,
  encodeStreamHello,
  FdMode,
  parseReply,
  SPAWNER_CHILD_FDS,
  type SpawnerReply,
} from './spawner-protocol.js';

/** How long the spawner may take to start listening before a launch fails. */
const SPAWNER_START_TIMEOUT_MS = 10_000;
/** Reply lines are short; a control connection sending more than this without a newline is broken. */
const REPLY_LINE_MAX = 1024;

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, num]) => [num as number, name as NodeJS.Signals]),
);

/** One running kiln-spawner: started by this process, dies with it (PR_SET_PDEATHSIG). */
class SpawnerProcess {
  dead = false;
  readonly ready: Promise<void>;

  /**
   * A launch lost its control connection with neither an exit status nor an error line: the spawner is
   * dead or broken. Launches from now on go to a new one (Node may not have seen the exit yet).
   */
  lost(): void {
    if (this.dead) return;
    this.dead = true;
    this.child.kill('SIGKILL');
  }

  constructor(
    readonly child: ChildProcess,
    readonly socketPath: string,
  ) {
    this.ready = new Promise((resolve, reject) => {
      const out = child.stdout as Socket;
      let text = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`kiln-spawner did not start within ${SPAWNER_START_TIMEOUT_MS} ms`));
      }, SPAWNER_START_TIMEOUT_MS);
      out.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (text.includes('ready\n')) {
          clearTimeout(timer);
          // The spawner must never keep the runner alive, nor its stdout pipe a handle open.
          out.destroy();
          child.unref();
          resolve();
        }
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        this.dead = true;
        reject(new Error(`could not start kiln-spawner: ${err.message}`));
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        this.dead = true;
        reject(new Error(`kiln-spawner exited (${code ?? signal}) before it was ready`));
      });
    });
    // A rejection nobody awaits yet (the spawner died between launches) is not an unhandled one.
    this.ready.catch(() => {});
  }
}

let current: SpawnerProcess | undefined;
let generation = 0;

/**
 * Removes the sockets of spawners whose runner is gone (a runner killed outright cannot remove its own;
 * the spawner dies by SIGKILL with it). Names are `<runner pid>-<generation>.sock`.
 */
function removeStaleSockets(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^(\d+)-\d+\.sock$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') removeSocket(`${dir}/${name}`);
    }
  }
}

/** The live spawner, started on first use and restarted after it died. */
async function spawner(): Promise<SpawnerProcess> {
  if (!current || current.dead) {
    const dir = runtimeSubdir('spawner', 0o700);
    if (generation === 0) removeStaleSockets(dir);
    const socketPath = `${dir}/${process.pid}-${generation++}.sock`;
    const child = spawn(nativeHelperPath('kiln-spawner'), ['--socket', socketPath, '--parent', String(process.pid)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {},
    });
    const started = new SpawnerProcess(child, socketPath);
    sockets.add(socketPath);
    child.once('exit', () => removeSocket(socketPath));
    current = started;
  }
  const s = current;
  await s.ready;
  return s;
}

const sockets = new Set<string>();
function removeSocket(path: string): void {
  sockets.delete(path);
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}
process.once('exit', () => {
  for (const path of sockets) removeSocket(path);
});

/** Stops the current spawner (tests: its death must end in-flight launches cleanly). Returns its pid. */
export function killSpawnerForTest(): number | undefined {
  const pid = current?.child.pid;
  current?.child.kill('SIGKILL');
  return pid;
}

/** What the child's fd i is, as child_process.spawn's stdio option: a stream to us, or nothing. */
export type StdioChoice = 'pipe' | 'ignore';

export interface LaunchRequest {
  /** Absolute path of the program; argv[0] too. */
  path: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  /** Up to six entries, fds 0..5. 'ignore' gives /dev/null on 0..2 and a closed fd above (as spawn does). */
  stdio: readonly StdioChoice[];
}

/**
 * A process started by kiln-spawner, shaped like the part of ChildProcess the runner uses: `stdio`
 * (sockets), `pid`, `kill()`, 'spawn' (the pid is known), 'error' and 'close' (after the exit and every
 * stream closed). Stream data may arrive before 'spawn': they travel on different connections.
 */
export class SpawnedProcess extends EventEmitter {
  pid: number | undefined;
  readonly stdio: (Socket | null)[];
  private readonly control: Socket;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private openStreams = 0;
  private controlClosed = false;
  private closed = false;

  /** `onLost`: called when the spawner vanished under this launch (see SpawnerProcess.lost). */
  constructor(
    socketPath: string,
    request: LaunchRequest,
    private readonly onLost?: () => void,
  ) {
    super();
    const key = randomBytes(16).toString('hex');
    const modes = Array.from({ length: SPAWNER_CHILD_FDS }, (_, fd): FdMode => {
      const choice = request.stdio[fd] ?? 'ignore';
      if (choice === 'pipe') return FdMode.Stream;
      return fd <= 2 ? FdMode.Null : FdMode.Closed;
    });
    const hello = encodeControlHello({ key, modes, argv: [request.path, ...request.args], env: request.env });
    this.control = createConnection(socketPath);
    this.control.write(hello);
    this.stdio = modes.map((mode, fd) => {
      if (mode !== FdMode.Stream) return null;
      const s = createConnection(socketPath);
      s.write(encodeStreamHello(key, fd));
      this.openStreams++;
      // The child may close its end with our bytes unread (ECONNRESET, EPIPE): the run decides, not us.
      s.on('error', () => {});
      s.once('close', () => {
        this.openStreams--;
        this.maybeClose();
      });
      return s;
    });
    this.watchControl();
  }

  private watchControl(): void {
    let pending = '';
    let failure: string | undefined;
    this.control.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const reply = parseReply(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        if (reply) this.onReply(reply, (message) => (failure ??= message));
      }
      if (pending.length > REPLY_LINE_MAX) this.control.destroy();
    });
    this.control.on('error', (err) => {
      // After the exit line, a reset is only the spawner closing with our kill request unread.
      if (!this.exit) failure ??= `lost the connection to kiln-spawner: ${err.message}`;
    });
    this.control.once('close', () => {
      this.controlClosed = true;
      if (!this.exit && (failure === undefined || failure.startsWith('lost the connection'))) {
        failure ??= 'kiln-spawner ended the launch without an exit status (did it die?)';
        this.onLost?.();
      }
      if (failure !== undefined && this.listenerCount('error') > 0) this.emit('error', new Error(failure));
      this.maybeClose();
    });
  }

  private onReply(reply: SpawnerReply, fail: (message: string) => void): void {
    if (reply.kind === 'pid') {
      this.pid = reply.pid;
      this.emit('spawn');
    }
    else if (reply.kind === 'error') fail(`kiln-spawner: ${reply.message}`);
    else {
      this.exit = {
        code: reply.code,
        signal: reply.signal === null ? null : (SIGNAL_NAMES.get(reply.signal) ?? 'SIGKILL'),
      };
    }
  }

  private maybeClose(): void {
    if (this.closed || !this.controlClosed || this.openStreams > 0) return;
    this.closed = true;
    this.emit('close', this.exit?.code ?? null, this.exit?.signal ?? null);
  }

  /** Sends `signal` through the spawner, which knows whether the pid is still its child (no reuse race). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    const num = constants.signals[signal];
    if (this.exit || this.controlClosed || num === undefined) return false;
    this.control.write(Buffer.from([num]));
    return true;
  }
}

/** Starts a process through kiln-spawner (which is started first if needed). */
export async function spawnViaSpawner(request: LaunchRequest): Promise<SpawnedProcess> {
  const s = await spawner();
  return new SpawnedProcess(s.socketPath, request, () => s.lost());
}
