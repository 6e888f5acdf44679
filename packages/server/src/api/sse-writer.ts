import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

/** Takes the reply over from Fastify and answers 200 text/event-stream, unbuffered by proxies. */
export function openEventStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  return res;
}

export interface SseWriterOptions {
  /** Bytes this stream may hold in memory that its connection has not taken yet. */
  maxBufferedBytes: number;
  /** A connection that takes nothing for this long is closed. */
  stallTimeoutMs: number;
  /** The event sent in place of the output that did not fit (then no more output is sent). */
  cutNotice: { event: string; data: unknown };
  /** Called once when output is first cut, with the bytes dropped then. */
  onCut(droppedBytes: number): void;
  /** Called for bytes of output dropped after the cut. */
  onDropped(droppedBytes: number): void;
}

interface Frame {
  text: string;
  bytes: number;
  /** output may be cut; status and end are never dropped (there are few of them) */
  output: boolean;
}

/**
 * A server-sent-event stream that honours its connection's back-pressure: it writes while the socket
 * takes data, queues (bounded) while it does not, and when a slow reader's backlog passes its bound it
 * drops the queued output, sends one `cutNotice` and sends no more output: status changes and the end
 * still go out. A connection that takes nothing for `stallTimeoutMs` is closed. So what one watcher
 * holds in memory never passes `maxBufferedBytes` plus a few small frames, however slowly it reads.
 */
export class SseWriter {
  private readonly queue: Frame[] = [];
  private queuedBytes = 0;
  private blocked = false;
  private cut = false;
  private ending = false;
  private closed = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseWriterOptions,
  ) {
    res.once('close', () => {
      this.closed = true;
      this.queue.length = 0;
      this.queuedBytes = 0;
      clearTimeout(this.stallTimer);
    });
  }

  /** Bytes held for this connection: queued here, and accepted by the socket but not yet sent. */
  get bufferedBytes(): number {
    return this.closed ? 0 : this.queuedBytes + this.res.writableLength;
  }

  /** True once output was cut for a slow reader. */
  get isCut(): boolean {
    return this.cut;
  }

  /** An event that carries output: dropped once the stream is cut, and cut when it does not fit. */
  output(event: string, data: unknown, outputBytes: number): void {
    if (this.closed || this.ending) return;
    if (this.cut) {
      this.options.onDropped(outputBytes);
      return;
    }
    const frame = toFrame(event, data, true);
    if (this.bufferedBytes + frame.bytes > this.options.maxBufferedBytes) {
      this.cutOutput(outputBytes);
      return;
    }
    this.push(frame);
  }

  /** An event that is never dropped (status, end). */
  control(event: string, data: unknown): void {
    if (this.closed || this.ending) return;
    this.push(toFrame(event, data, false));
  }

  /** A keep-alive comment, only when the connection is keeping up (a blocked one needs none). */
  keepAlive(): void {
    if (this.closed || this.ending || this.blocked) return;
    if (!this.res.write(': keep-alive\n\n')) this.block();
  }

  /** Ends the response once what is queued went out. */
  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (!this.blocked) this.res.end();
  }

  private cutOutput(outputBytes: number): void {
    this.cut = true;
    let dropped = outputBytes;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const frame = this.queue[i]!;
      if (!frame.output) continue;
      dropped += frame.bytes;
      this.queuedBytes -= frame.bytes;
      this.queue.splice(i, 1);
    }
    this.options.onCut(dropped);
    this.push(toFrame(this.options.cutNotice.event, this.options.cutNotice.data, false));
  }

  private push(frame: Frame): void {
    if (this.blocked) {
      this.queue.push(frame);
      this.queuedBytes += frame.bytes;
      return;
    }
    if (!this.res.write(frame.text)) this.block();
  }

  private block(): void {
    this.blocked = true;
    this.res.once('drain', this.onDrain);
    this.stallTimer = setTimeout(() => this.res.destroy(), this.options.stallTimeoutMs);
  }

  private readonly onDrain = () => {
    clearTimeout(this.stallTimer);
    this.blocked = false;
    while (this.queue.length > 0 && !this.blocked) {
      const frame = this.queue.shift()!;
      this.queuedBytes -= frame.bytes;
      if (!this.res.write(frame.text)) this.block();
    }
    if (!this.blocked && this.ending) this.res.end();
  };
}

function toFrame(event: string, data: unknown, output: boolean): Frame {
  const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  return { text, bytes: Buffer.byteLength(text), output };
}
