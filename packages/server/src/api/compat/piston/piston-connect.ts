import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { isKilnError, type Job } from '@kiln/core';
import { WebSocketServer, type WebSocket } from 'ws';
import { compatPrincipal } from '../../../services/compat/compat-principal.js';
import { pistonExecuteSchema, pistonResultOf, startPiston, type PistonStage } from '../../../services/compat/piston.js';
import type { Principal } from '../../../services/context.js';
import type { JobDeps } from '../../../services/job-deps.js';
import { cancelJob, getTenantJob } from '../../../services/jobs.js';
import { isTerminalStatus } from '../../../services/job-views.js';
import type { KilnApp } from '../../app.js';
import { PISTON_PREFIX } from './piston-routes.js';
import { PISTON_STDIN_MAX_QUEUED_BYTES, PISTON_STDIN_MAX_QUEUED_MESSAGES, PistonStdin } from './piston-stdin.js';

const CONNECT_PATH = `${PISTON_PREFIX}/connect`;
/** Piston's close codes. */
export const PISTON_CLOSE = {
  alreadyInitialized: 4000,
  initializationTimeout: 4001,
  notifiedError: 4002,
  notYetInitialized: 4003,
  canOnlyWriteToStdin: 4004,
  invalidSignal: 4005,
  jobCompleted: 4999,
} as const;
/** Piston closes a connection that sends no `init` within a second. */
const INIT_TIMEOUT_MS = 1000;
/** Largest message a client may send (an init with its files). */
const MAX_MESSAGE_BYTES = 9 * 1024 * 1024;
const SIGNALS = new Set(['SIGABRT', 'SIGALRM', 'SIGBUS', 'SIGCHLD', 'SIGCONT', 'SIGFPE', 'SIGHUP', 'SIGILL', 'SIGINT', 'SIGIO', 'SIGKILL', 'SIGPIPE', 'SIGPROF', 'SIGPWR', 'SIGQUIT', 'SIGSEGV', 'SIGSTKFLT', 'SIGSTOP', 'SIGSYS', 'SIGTERM', 'SIGTRAP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGUSR1', 'SIGUSR2', 'SIGVTALRM', 'SIGWINCH', 'SIGXCPU', 'SIGXFSZ']);

/**
 * Piston's interactive WebSocket, `/api/v2/connect`: `init` starts a kiln job (as `POST /execute` does),
 * then `runtime`, `stage`, `data` (stdout/stderr as the job writes them) and `exit` messages, and close
 * 4999 when the job is done. A `signal` really kills the job's sandbox (kiln cancels it: Piston itself
 * only forwards the signal to its process). The job runs with an open stdin: `init`'s `stdin` first,
 * then each stdin `data` message as it comes (piston-stdin.ts; no end of file, as in Piston).
 */
export function installPistonConnect(app: KilnApp, deps: JobDeps, agentId: string | undefined): void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '').split('?')[0] !== CONNECT_PATH) return; // not ours
    void compatPrincipal(deps, app.kiln.secrets, req.headers.authorization, agentId).then(
      (principal) => wss.handleUpgrade(req, socket, head, (ws) => serve(ws, deps, principal)),
      (err: unknown) => {
        const status = isKilnError(err) ? err.status : 500;
        socket.end(`HTTP/1.1 ${status} Refused\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ message: (err as Error).message })}`);
      },
    );
  });
}

function serve(ws: WebSocket, deps: JobDeps, principal: Principal): void {
  const send = (message: Record<string, unknown>) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  const fail = (message: string, code: number = PISTON_CLOSE.notifiedError) => {
    send({ type: 'error', message });
    ws.close(code, message.slice(0, 120));
  };
  let initialized = false;
  let jobId: string | undefined;
  let leave = () => {};
  const stdin = new PistonStdin(deps, principal, (message) => send({ type: 'error', message }));
  const initTimer = setTimeout(() => ws.close(PISTON_CLOSE.initializationTimeout, 'Initialization Timeout'), INIT_TIMEOUT_MS);
  let completed = false;
  ws.on('close', () => {
    clearTimeout(initTimer);
    stdin.close();
    leave();
    // A client that goes away takes its job with it (as Piston does): nothing runs for nobody.
    if (jobId && !completed) void cancelJob(deps, principal, jobId).catch(() => {});
  });

  ws.on('message', (raw) => {
    let message: { type?: unknown; stream?: unknown; signal?: unknown; [k: string]: unknown };
    try {
      message = JSON.parse(raw.toString());
    } catch {
      return fail('messages are JSON');
    }
    if (message.type === 'init') {
      if (initialized) return ws.close(PISTON_CLOSE.alreadyInitialized, 'Already Initialized');
      initialized = true;
      clearTimeout(initTimer);
      const parsed = pistonExecuteSchema.safeParse(message);
      if (!parsed.success) return fail(`${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`);
      void startPiston(deps, principal, parsed.data, { stdinOpen: true }).then(
        ({ job, runtime }) => {
          jobId = job.id;
          stdin.start(job.id);
          if (ws.readyState !== ws.OPEN) return void cancelJob(deps, principal, job.id).catch(() => {});
          send({ type: 'runtime', language: runtime.language, version: runtime.version });
          leave = follow(deps, principal, job, runtime.compiled, send, (result) => {
            completed = true;
            stdin.close();
            // Compiled languages: the compile step's output comes with its result, before the run's.
            void (async () => {
              const piston = await pistonResultOf(deps, principal, result, runtime);
              const stage = (name: 'compile' | 'run', s: PistonStage, streamed: boolean) => {
                if (!streamed) {
                  send({ type: 'stage', stage: name });
                  if (s.stdout) send({ type: 'data', stream: 'stdout', data: s.stdout });
                  if (s.stderr) send({ type: 'data', stream: 'stderr', data: s.stderr });
                }
                send({ type: 'exit', stage: name, code: s.code, signal: s.signal });
              };
              if (piston.compile) stage('compile', piston.compile, false);
              if (piston.run) stage('run', piston.run, !runtime.compiled);
              ws.close(PISTON_CLOSE.jobCompleted, 'Job Completed');
            })().catch((err: unknown) => fail((err as Error).message));
          });
        },
        (err: unknown) => fail((err as Error).message),
      );
      return;
    }
    if (!initialized) return ws.close(PISTON_CLOSE.notYetInitialized, 'Not yet Initialized');
    if (message.type === 'data') {
      if (message.stream !== 'stdin') return ws.close(PISTON_CLOSE.canOnlyWriteToStdin, 'Can only write to stdin');
      if (typeof message.data !== 'string') return fail('a stdin data message carries its text in "data"');
      if (!stdin.push(message.data)) {
        return fail(`stdin is flooded: more than ${PISTON_STDIN_MAX_QUEUED_MESSAGES} messages or ${PISTON_STDIN_MAX_QUEUED_BYTES} bytes wait for a program that does not read them`);
      }
      return;
    }
    if (message.type === 'signal') {
      if (typeof message.signal !== 'string' || !SIGNALS.has(message.signal)) return ws.close(PISTON_CLOSE.invalidSignal, 'Invalid signal');
      // Any signal ends the job: kiln kills the whole sandbox (within a second), not just one process.
      if (jobId) void cancelJob(deps, principal, jobId).catch((err: unknown) => fail((err as Error).message));
      return;
    }
    fail(`unknown message type ${JSON.stringify(String(message.type).slice(0, 32))}`);
  });
}

/**
 * Streams a job's live output as Piston `data` messages (interpreted languages: the run stage from the
 * start) and calls `ended` with the job once it is terminal and reported.
 */
function follow(
  deps: JobDeps,
  principal: Principal,
  job: Job,
  compiled: boolean,
  send: (m: Record<string, unknown>) => void,
  ended: (job: Job) => void,
): () => void {
  let lastSeq = 0;
  let done = false;
  if (!compiled) send({ type: 'stage', stage: 'run' });
  const emit = (item: { seq: number; stream: string; data?: string }) => {
    if (compiled || item.seq <= lastSeq || item.data === undefined) return;
    lastSeq = item.seq;
    send({ type: 'data', stream: item.stream, data: item.data });
  };
  const finish = (j: Job) => {
    if (done) return;
    done = true;
    for (const item of deps.liveOutput.since(job.id, lastSeq)) emit(item as { seq: number; stream: string; data?: string });
    ended(j);
  };
  // Counted with the job's other watchers: a tenant's connections are bounded like its event streams.
  const ticket = deps.watchers.admit(job.id, principal);
  const unwatch = deps.watchers.watch(job.id, {
    deliver: (m) => {
      if (m.type === 'output') emit(m);
      else if (m.type === 'end') finish(m.job);
    },
    close: () => {},
    bufferedBytes: () => 0,
  });
  for (const item of deps.liveOutput.since(job.id, 0)) emit(item as { seq: number; stream: string; data?: string });
  // The job may have ended before the watch began.
  void getTenantJob(deps, principal, job.id).then((j) => {
    if (isTerminalStatus(j.status) && j.output_refs !== null) finish(j);
  });
  return () => {
    unwatch();
    ticket.release();
  };
}
