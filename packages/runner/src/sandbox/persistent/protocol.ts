/**
 * The kiln-init wire protocol, mirrored from the comment at the top of
 * packages/runner/native/init/kiln-init.c (the reference): frames of 1 byte type, 4 bytes big-endian
 * payload length, payload. Clients send upper-case types, the init lower-case ones.
 */

export const HEADER_BYTES = 5;
/** The largest payload either side accepts; bigger frames end the connection. */
export const MAX_PAYLOAD_BYTES = 65_536;

/** Frames a client sends. */
export const ClientFrame = {
  arg: 'A',
  env: 'E',
  cwd: 'D',
  timeout: 'T',
  start: 'X',
  tunnel: 'P',
  stdin: 'I',
  closeStdin: 'C',
  kill: 'K',
} as const;

/** Frames the init sends. */
export const InitFrame = {
  started: 's',
  stdout: 'o',
  stderr: 'e',
  exit: 'x',
  failure: 'f',
  tunnelReady: 'p',
} as const;

export interface Frame {
  type: string;
  payload: Buffer;
}

/** How a command ended, as the init reports it. */
export interface InitExit {
  /** Exit code when the process exited, else null. */
  code: number | null;
  /** Signal number when a signal killed it, else null. */
  signalNumber: number | null;
  /** The init's own timeout fired (the group was SIGKILLed). */
  timedOut: boolean;
  /** A 'K' frame asked for the kill. */
  killRequested: boolean;
}

/** Encodes one frame. */
export function encodeFrame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (body.length > MAX_PAYLOAD_BYTES) throw new RangeError(`frame payload ${body.length} > ${MAX_PAYLOAD_BYTES} bytes`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(type, 0, 1, 'latin1');
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

/** Encodes bytes of any size as as many frames of `type` as needed. */
export function encodeChunked(type: string, data: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_PAYLOAD_BYTES) {
    frames.push(encodeFrame(type, data.subarray(off, off + MAX_PAYLOAD_BYTES)));
  }
  return frames;
}

export interface CommandRequest {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** 0 or absent: no timeout in the init. */
  timeoutMs?: number;
}

/** The frames that describe a command and start it. */
export function encodeCommand(request: CommandRequest): Buffer {
  if (request.argv.length === 0) throw new RangeError('argv must not be empty');
  const frames = request.argv.map((arg) => encodeFrame(ClientFrame.arg, arg));
  for (const [name, value] of Object.entries(request.env)) frames.push(encodeFrame(ClientFrame.env, `${name}=${value}`));
  if (request.cwd !== undefined) frames.push(encodeFrame(ClientFrame.cwd, request.cwd));
  if (request.timeoutMs) {
    const ms = Buffer.alloc(4);
    ms.writeUInt32BE(Math.min(Math.ceil(request.timeoutMs), 0xffff_ffff));
    frames.push(encodeFrame(ClientFrame.timeout, ms));
  }
  frames.push(encodeFrame(ClientFrame.start));
  return Buffer.concat(frames);
}

export function encodeTunnel(port: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return encodeFrame(ClientFrame.tunnel, p);
}

export function decodeExitFrame(payload: Buffer): InitExit {
  if (payload.length !== 6) throw new Error(`bad exit frame of ${payload.length} bytes`);
  const signaled = payload[0] === 1;
  const value = payload.readUInt32BE(1);
  const flags = payload[5] ?? 0;
  return {
    code: signaled ? null : value,
    signalNumber: signaled ? value : null,
    timedOut: (flags & 1) !== 0,
    killRequested: (flags & 2) !== 0,
  };
}

/** Splits a byte stream into frames; throws on a frame larger than the protocol allows. */
export class FrameDecoder {
  private buffered: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the complete frames and keeps the rest. */
  push(chunk: Buffer): Frame[] {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const frames: Frame[] = [];
    let off = 0;
    while (this.buffered.length - off >= HEADER_BYTES) {
      const length = this.buffered.readUInt32BE(off + 1);
      if (length > MAX_PAYLOAD_BYTES) throw new Error(`frame of ${length} bytes exceeds the protocol's bound`);
      if (this.buffered.length - off < HEADER_BYTES + length) break;
      frames.push({
        type: String.fromCharCode(this.buffered[off] ?? 0),
        payload: this.buffered.subarray(off + HEADER_BYTES, off + HEADER_BYTES + length),
      });
      off += HEADER_BYTES + length;
    }
    this.buffered = this.buffered.subarray(off);
    return frames;
  }

  /** Bytes received after the last complete frame (a tunnel's first raw bytes). */
  rest(): Buffer {
    return this.buffered;
  }
}
