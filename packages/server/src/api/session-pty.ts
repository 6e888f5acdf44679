import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { KilnError } from '@kiln/core';
import { WebSocketServer, type WebSocket } from 'ws';
import { authenticate } from '../services/auth.js';
import type { JobDeps } from '../services/job-deps.js';
import { submitStep, writeStepStdin, type StepEvent, type StepEvents } from '../services/sessions/steps.js';
import type { KilnApp } from './app.js';

const PTY_PATH = /^\/v1\/sessions\/([A-Za-z0-9_-]{1,128})\/pty(?:\?.*)?$/;
/** Largest frame a terminal client may send (keystrokes and pastes, not files). */
const MAX_FRAME_BYTES = 64 * 1024;

/**
 * Browsers cannot set headers on a WebSocket, and a key never goes in a URL (logs, history, Referer):
 * a browser offers the subprotocols `kiln.pty` and `kiln.key.<key>` instead. The server answers with
 * `kiln.pty` only, so the key is never echoed back.
 */
export const PTY_SUBPROTOCOL = 'kiln.pty';
const KEY_SUBPROTOCOL_PREFIX = 'kiln.key.';

function authorizationOf(req: IncomingMessage): string | undefined {
  if (req.headers.authorization) return req.headers.authorization;
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const key = offered.find((p) => p.startsWith(KEY_SUBPROTOCOL_PREFIX))?.slice(KEY_SUBPROTOCOL_PREFIX.length);
  return key ? `Bearer ${key}` : undefined;
}

const size = (v: string | null, fallback: number) => {
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : fallback;
};

/**
 * `GET /v1/sessions/{id}/pty` upgrades to a WebSocket (issue 8, point 5): a shell on a pseudo-terminal
 * inside the session's sandbox (util-linux `script` allocates it in the sandbox's own devpts), input and
 * output as binary frames, `{"type":"resize","cols","rows"}` text frames, and `{"type":"exit","code"}`
 * at the end. The key comes in `Authorization` or, from a browser, as a subprotocol (above). The shell is a background step of the session, so it is in the transcript and audited.
 */
export function installSessionPty(app: KilnApp, deps: JobDeps, events: StepEvents): void {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    handleProtocols: (offered) => (offered.has(PTY_SUBPROTOCOL) ? PTY_SUBPROTOCOL : false),
  });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const match = PTY_PATH.exec(req.url ?? '');
    if (!match) return; // not ours
    void (async () => {
      const principal = await authenticate(deps, app.kiln.secrets, authorizationOf(req));
      const url = new URL(req.url!, 'http://kiln');
      const cols = size(url.searchParams.get('cols'), 80);
      const rows = size(url.searchParams.get('rows'), 24);
      const step = await submitStep(deps, events, principal, match[1]!, {
        command: ['script', '-qfec', `stty rows ${rows} cols ${cols}; exec /bin/sh -i`, '/dev/null'],
        env: { TERM: 'xterm-256color' },
        background: true,
        timeout_ms: 24 * 3600 * 1000,
      });
      const live = events.get(step.id);
      wss.handleUpgrade(req, socket, head, (ws) => attach(ws, live, step.sequence));
      function attach(ws: WebSocket, stepEvents: ReturnType<StepEvents['get']>, sequence: number) {
        const sessionId = match![1]!;
        const onEvent = (e: StepEvent) => {
          if (e.type === 'output') ws.send(Buffer.from(e.data));
          else if (e.type === 'end') {
            ws.send(JSON.stringify({ type: 'exit', code: e.step.exit_status?.code ?? null, signal: e.step.exit_status?.signal ?? null }));
            ws.close(1000);
          }
        };
        if (!stepEvents) {
          ws.send(JSON.stringify({ type: 'exit', code: null, signal: null }));
          return ws.close(1011);
        }
        for (const e of stepEvents.history) onEvent(e);
        stepEvents.on('event', onEvent);
        // Keystrokes arrive one frame each; each write is a call to the runner, so they are sent one after
        // the other (concurrent calls could overtake each other and reorder what the user typed).
        let writes: Promise<unknown> = Promise.resolve();
        const writeInOrder = (data: string, eof: boolean, onError: () => void) => {
          writes = writes.then(() => writeStepStdin(deps, principal, sessionId, sequence, { data, eof })).catch(onError);
        };
        ws.on('message', (data, isBinary) => {
          const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
          if (isBinary) {
            writeInOrder(bytes.toString('utf8'), false, () => ws.close(1011));
            return;
          }
          let msg: { type?: string; cols?: unknown; rows?: unknown };
          try {
            msg = JSON.parse(bytes.toString('utf8'));
          } catch {
            return ws.close(1003, 'text frames are JSON control messages');
          }
          if (msg.type === 'resize') {
            const c = size(String(msg.cols), cols);
            const r = size(String(msg.rows), rows);
            // The shell's terminal is the sandbox's first pseudo-terminal.
            void submitStep(deps, events, principal, sessionId, { command: ['stty', '-F', '/dev/pts/0', 'rows', String(r), 'cols', String(c)], background: false }).catch(() => {});
          }
        });
        ws.on('close', () => {
          stepEvents.off('event', onEvent);
          // The terminal closed: its shell ends (the session lives on).
          writeInOrder('', true, () => {});
        });
      }
    })().catch((err: unknown) => {
      const e = err instanceof KilnError ? err : new KilnError('INTERNAL', 'could not open the terminal');
      socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\ncontent-type: application/problem+json\r\nconnection: close\r\n\r\n${JSON.stringify({ status: e.status, code: e.code, detail: e.message })}`);
    });
  });
}
