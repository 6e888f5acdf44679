/**
 * The wire protocol of kiln-spawner (native/spawner/kiln-spawner.c, whose header comment is the
 * reference). Every connection opens with one hello frame: a little-endian u32 body length, then the body.
 *
 * - control: `'C' KEY[32] MODES[6] u32:argc u32:envc` + argc+envc NUL-terminated strings (argv, then
 *   `NAME=value` environment entries). Replies are lines: `pid N`, `error TEXT`, `exit CODE SIGNAL`.
 *   Afterwards the client may write single bytes, each a signal number to send to the child.
 * - stream: `'S' KEY[32] FD`: the connection becomes the child's fd FD (0..5).
 */

/** Child fds the spawner can set up: stdin, stdout, stderr and three more (kiln-launch uses 3, 4, 5). */
export const SPAWNER_CHILD_FDS = 6;
/** Largest hello the spawner accepts (MAX_REQUEST in the C source). */
export const SPAWNER_MAX_REQUEST_BYTES = 1024 * 1024;
/** Most argv or environment entries per launch (MAX_STRINGS in the C source). */
export const SPAWNER_MAX_STRINGS = 65536;
/** Length of a launch key: 32 lowercase hex digits. */
export const SPAWNER_KEY_LENGTH = 32;

/** What the child's fd i is: closed, /dev/null, or one of the client's stream connections. */
export const FdMode = { Closed: 0, Null: 1, Stream: 2 } as const;
export type FdMode = (typeof FdMode)[keyof typeof FdMode];

export interface ControlHello {
  key: string;
  /** One mode per child fd 0..5. */
  modes: readonly FdMode[];
  /** argv[0] is the program's absolute path. */
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
}

function frame(body: Buffer): Buffer {
  if (body.length < 1 || body.length > SPAWNER_MAX_REQUEST_BYTES) {
    throw new Error(`a spawner request must be 1..${SPAWNER_MAX_REQUEST_BYTES} bytes, this one is ${body.length}`);
  }
  const header = Buffer.alloc(4);
  header.writeUInt32LE(body.length, 0);
  return Buffer.concat([header, body]);
}

function checkKey(key: string): void {
  if (!/^[0-9a-f]{32}$/.test(key)) throw new Error('a spawner launch key is 32 lowercase hex digits');
}

/** The control connection's hello; throws on input the spawner would refuse. */
export function encodeControlHello(hello: ControlHello): Buffer {
  checkKey(hello.key);
  if (hello.modes.length !== SPAWNER_CHILD_FDS) throw new Error(`the spawner wants ${SPAWNER_CHILD_FDS} fd modes`);
  const [program] = hello.argv;
  if (program === undefined || !program.startsWith('/')) throw new Error('the spawner runs programs by absolute path');
  const env = Object.entries(hello.env).map(([name, value]) => `${name}=${value}`);
  const strings = [...hello.argv, ...env];
  if (hello.argv.length > SPAWNER_MAX_STRINGS || env.length > SPAWNER_MAX_STRINGS) {
    throw new Error(`the spawner takes at most ${SPAWNER_MAX_STRINGS} arguments and environment entries`);
  }
  if (strings.some((s) => s.includes('\0'))) throw new Error('arguments and environment entries cannot contain NUL');
  const head = Buffer.alloc(1 + SPAWNER_KEY_LENGTH + SPAWNER_CHILD_FDS + 8);
  head.write('C', 0, 'latin1');
  head.write(hello.key, 1, 'latin1');
  hello.modes.forEach((m, i) => head.writeUInt8(m, 1 + SPAWNER_KEY_LENGTH + i));
  head.writeUInt32LE(hello.argv.length, 1 + SPAWNER_KEY_LENGTH + SPAWNER_CHILD_FDS);
  head.writeUInt32LE(env.length, 1 + SPAWNER_KEY_LENGTH + SPAWNER_CHILD_FDS + 4);
  return frame(Buffer.concat([head, ...strings.map((s) => Buffer.from(`${s}\0`, 'utf8'))]));
}

/** A stream connection's hello: this connection becomes the child's `fd`. */
export function encodeStreamHello(key: string, fd: number): Buffer {
  checkKey(key);
  if (!Number.isInteger(fd) || fd < 0 || fd >= SPAWNER_CHILD_FDS) throw new Error(`bad child fd ${fd}`);
  const body = Buffer.alloc(1 + SPAWNER_KEY_LENGTH + 1);
  body.write('S', 0, 'latin1');
  body.write(key, 1, 'latin1');
  body.writeUInt8(fd, 1 + SPAWNER_KEY_LENGTH);
  return frame(body);
}

export type SpawnerReply =
  | { kind: 'pid'; pid: number }
  | { kind: 'error'; message: string }
  | { kind: 'exit'; code: number | null; signal: number | null };

/** Parses one reply line (without its newline); undefined for a line the protocol does not know. */
export function parseReply(line: string): SpawnerReply | undefined {
  const space = line.indexOf(' ');
  const word = space < 0 ? line : line.slice(0, space);
  const rest = space < 0 ? '' : line.slice(space + 1);
  if (word === 'pid' && /^[1-9][0-9]*$/.test(rest)) return { kind: 'pid', pid: Number(rest) };
  if (word === 'error') return { kind: 'error', message: rest };
  const m = word === 'exit' ? /^(-|[0-9]+) (-|[0-9]+)$/.exec(rest) : null;
  if (m) {
    return {
      kind: 'exit',
      code: m[1] === '-' ? null : Number(m[1]),
      signal: m[2] === '-' ? null : Number(m[2]),
    };
  }
  return undefined;
}
