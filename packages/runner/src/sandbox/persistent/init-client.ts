import fs from 'node:fs';
import net from 'node:net';
import {
  ClientFrame,
  type CommandRequest,
  decodeExitFrame,
  encodeChunked,
  encodeCommand,
  encodeFrame,
  encodeTunnel,
  FrameDecoder,
  HEADER_BYTES,
  InitFrame,
  MAX_PAYLOAD_BYTES,
  type InitExit,
} from './protocol.js';

/** open(2)'s O_PATH on Linux; Node has no constant for it. */
const O_PATH = 0o10000000;

/**
 * Connects to a Unix socket that lives in a folder the sandbox can write to, without following a
 * link the sandbox may have put in its place: the path is opened with O_PATH|O_NOFOLLOW, checked to be
 * a socket, and connected through /proc/self/fd. A planted symlink to a host socket is refused.
 */
export async function connectUnixNoFollow(socketPath: string): Promise<net.Socket> {
  const fd = fs.openSync(socketPath, O_PATH | fs.constants.O_NOFOLLOW);
  try {
    if (!fs.fstatSync(fd).isSocket()) throw new Error(`${socketPath} is not a socket`);
    return await new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(`/proc/self/fd/${fd}`);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  } finally {
    fs.closeSync(fd);
  }
}

export interface InitCommandOptions {
  stdin?: Buffer;
  /** Stop collecting and kill the command past this many stdout+stderr bytes. */
  outputLimitBytes: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /** Give up (reject) when the init has not reported the exit by then: a wedged init, not a slow command. */
  answerDeadlineMs?: number;
  /** Keep stdin open after `stdin`; the writer sends more and closes it. */
  openStdin?: (writer: { write(data: Buffer): void; end(): void }) => void;
  /**
   * Hand output to the callbacks only, neither kept nor capped (a long-running service's log, which its
   * host bounds itself). @default true
   */
  keepOutput?: boolean;
}

export interface InitCommandResult {
  exit: InitExit;
  stdout: Buffer;
  stderr: Buffer;
  /** The output passed outputLimitBytes (the command was killed, the output cut). */
  outputLimitHit: boolean;
  /** The signal aborted the command. */
  canceled: boolean;
  /** Total output bytes the command produced (including what was cut). */
  outputBytes: number;
}

/** Runs one command through the init's socket: one connection, streamed output, exit status. */
export async function runInitCommand(
  socketPath: string,
  request: CommandRequest,
  options: InitCommandOptions,
): Promise<InitCommandResult> {
  const socket = await connectUnixNoFollow(socketPath);
  return new Promise<InitCommandResult>((resolve, reject) => {
    const decoder = new FrameDecoder();
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let kept = 0;
    let produced = 0;
    let outputLimitHit = false;
    let canceled = false;
    let settled = false;

    const kill = () => {
      if (!socket.destroyed) socket.write(encodeFrame(ClientFrame.kill));
    };
    const onAbort = () => {
      canceled = true;
      kill();
    };
    const deadline =
      options.answerDeadlineMs === undefined
        ? undefined
        : setTimeout(() => finish(new Error(`kiln-init did not answer within ${options.answerDeadlineMs} ms`)), options.answerDeadlineMs);
    const finish = (error: Error | null, exit?: InitExit) => {
      if (settled) return;
      settled = true;
      if (deadline) clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (error || !exit) return reject(error ?? new Error('kiln-init closed the connection before the exit'));
      resolve({
        exit,
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr),
        outputLimitHit,
        canceled,
        outputBytes: produced,
      });
    };
    const output = (chunk: Buffer, into: Buffer[], callback?: (chunk: Buffer) => void) => {
      produced += chunk.length;
      if (options.keepOutput === false) return callback?.(Buffer.from(chunk));
      const room = options.outputLimitBytes - kept;
      const part = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(room, 0));
      if (part.length) {
        const copy = Buffer.from(part);
        into.push(copy);
        kept += copy.length;
        callback?.(copy);
      }
      if (part.length < chunk.length && !outputLimitHit) {
        outputLimitHit = true;
        kill();
      }
    };

    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        return finish(error as Error);
      }
      for (const frame of frames) {
        if (frame.type === InitFrame.stdout) output(frame.payload, stdout, options.onStdout);
        else if (frame.type === InitFrame.stderr) output(frame.payload, stderr, options.onStderr);
        else if (frame.type === InitFrame.exit) return finish(null, decodeExitFrame(frame.payload));
        else if (frame.type === InitFrame.failure) return finish(new Error(`kiln-init: ${frame.payload.toString()}`));
      }
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(null));

    if (options.signal?.aborted) canceled = true;
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const frames = [encodeCommand(request)];
    if (options.stdin?.length) frames.push(...encodeChunked(ClientFrame.stdin, options.stdin));
    if (!options.openStdin) frames.push(encodeFrame(ClientFrame.closeStdin));
    if (canceled) frames.push(encodeFrame(ClientFrame.kill));
    socket.write(Buffer.concat(frames));
    if (options.openStdin) {
      let closed = false;
      // Frames written in one turn go out in one write: input and its end of file arrive together,
      // before the command can exit and the init close the connection between them.
      let pending: Buffer[] = [];
      const flush = () => {
        const frames = pending;
        pending = [];
        if (frames.length && !settled && !socket.destroyed) socket.write(Buffer.concat(frames));
      };
      const queue = (frames: Buffer[]) => {
        if (pending.length === 0) setImmediate(flush);
        pending.push(...frames);
      };
      options.openStdin({
        write: (data) => {
          if (!closed) queue(encodeChunked(ClientFrame.stdin, data));
        },
        end: () => {
          if (closed) return;
          closed = true;
          queue([encodeFrame(ClientFrame.closeStdin)]);
        },
      });
    }
  });
}

/**
 * Opens a raw byte tunnel to 127.0.0.1:port inside the sandbox. Resolves once the init has connected;
 * bytes that arrived with its answer are unshifted back into the socket.
 */
export async function openInitTunnel(socketPath: string, port: number): Promise<net.Socket> {
  const socket = await connectUnixNoFollow(socketPath);
  return new Promise<net.Socket>((resolve, reject) => {
    // Parsed by hand: after the 'p' frame the bytes are the service's, not frames.
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < HEADER_BYTES) return;
      const type = String.fromCharCode(buffered[0] ?? 0);
      const length = buffered.readUInt32BE(1);
      if (type === InitFrame.tunnelReady && length === 0) {
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.off('error', fail);
        socket.pause();
        const rest = buffered.subarray(HEADER_BYTES);
        if (rest.length) socket.unshift(rest);
        return resolve(socket);
      }
      if (type !== InitFrame.failure || length > MAX_PAYLOAD_BYTES) return fail(new Error('kiln-init: bad tunnel answer'));
      if (buffered.length >= HEADER_BYTES + length) {
        fail(new Error(`kiln-init: ${buffered.subarray(HEADER_BYTES, HEADER_BYTES + length).toString()}`));
      }
    };
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    const onClose = () => fail(new Error('kiln-init closed the tunnel before it was ready'));
    socket.on('data', onData);
    socket.on('error', fail);
    socket.on('close', onClose);
    socket.write(encodeTunnel(port));
  });
}
