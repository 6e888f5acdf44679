import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'pretty' | 'json';

/**
 * Fields that may hold a secret or a program: never written, whatever a caller passes. (kiln's own
 * lines name jobs by id and never carry bodies; this is the net under them.)
 */
const REDACT = {
  paths: [
    'req.headers.authorization',
    'req.headers.cookie',
    'req.body',
    'body',
    '*.body',
    'secret_env',
    '*.secret_env',
    'stdin',
    '*.stdin',
    'files',
    '*.files',
  ],
  censor: '[redacted]',
};

/** `pretty` on a terminal, JSON lines otherwise (for log shippers), unless KILN_LOG_FORMAT says which. */
export function defaultLogFormat(stream: { isTTY?: boolean }): LogFormat {
  return stream.isTTY ? 'pretty' : 'json';
}

/**
 * The one logger of a kiln process. Pretty output is formatted in this thread (pino-pretty as a
 * stream, no worker): lines stay in order with the process's own messages on the same terminal.
 */
export function createLogger(options: { name?: string; level: string; format: LogFormat; fd?: 1 | 2 }): Logger {
  const fd = options.fd ?? 1;
  const base = { level: options.level, redact: REDACT, ...(options.name ? { name: options.name } : {}) };
  if (options.format === 'json') return pino(base, pino.destination({ fd, sync: true }));
  const stream = pretty({
    destination: fd,
    sync: true,
    colorize: (fd === 1 ? process.stdout : process.stderr).isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
  return pino(base, stream);
}
