import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';

export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** At most one notification per this long from output, and one at least this often while work goes on. */
const MIN_INTERVAL_MS = 250;
const HEARTBEAT_INTERVAL_MS = 2000;

/**
 * MCP progress notifications for a long call, sent only when the client asked (a `progressToken` in the
 * request's `_meta`). `progress` only grows, as the protocol requires; output reports are throttled,
 * and a heartbeat says the work is still going when it prints nothing.
 */
export class ProgressReporter {
  private progress = 0;
  private lastSentAt = 0;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private readonly startedAt = Date.now();
  private outputBytes = 0;
  private state = 'submitted';

  constructor(private readonly extra: ToolExtra) {}

  get enabled(): boolean {
    return this.extra._meta?.progressToken !== undefined;
  }

  /** Starts the heartbeat; `stop()` ends it. */
  start(state: string): void {
    if (!this.enabled) return;
    this.state = state;
    this.send(true);
    this.heartbeat = setInterval(() => this.send(true), HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref?.();
  }

  /** The work changed state (submitted as job_…): always reported. */
  status(state: string): void {
    this.state = state;
    this.send(true);
  }

  /** Output arrived: reported at most every MIN_INTERVAL_MS. */
  output(bytes: number): void {
    this.outputBytes += bytes;
    this.send(false);
  }

  stop(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private send(force: boolean): void {
    const token = this.extra._meta?.progressToken;
    if (token === undefined) return;
    const now = Date.now();
    if (!force && now - this.lastSentAt < MIN_INTERVAL_MS) return;
    this.lastSentAt = now;
    this.progress += 1;
    const seconds = ((now - this.startedAt) / 1000).toFixed(1);
    const message = `${this.state}: ${seconds} s, ${this.outputBytes} bytes of output so far`;
    // A client that went away cannot be told; the call itself still ends normally.
    this.extra
      .sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: this.progress, message } })
      .catch(() => undefined);
  }
}
