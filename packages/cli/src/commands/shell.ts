import { Command } from 'commander';
import WebSocket from 'ws';

/** `kiln shell ID`: a terminal into a session's sandbox (raw mode, resized on SIGWINCH). */
export function registerShell(program: Command): void {
  program
    .command('shell <id>')
    .description("open a shell in a sandbox (session) on a pseudo-terminal; exits with the shell's code")
    .option('--url <url>', 'the control plane URL (KILN_URL)')
    .option('--api-key <key>', 'a tenant or agent key (KILN_API_KEY)')
    .action(async (id: string, opts: { url?: string; apiKey?: string }) => {
      const apiKey = opts.apiKey ?? process.env.KILN_API_KEY;
      if (!apiKey) throw new Error('no API key: set KILN_API_KEY or pass --api-key');
      const base = (opts.url ?? process.env.KILN_URL ?? 'http://127.0.0.1:8080').replace(/^http/, 'ws').replace(/\/+$/, '');
      const cols = process.stdout.columns ?? 80;
      const rows = process.stdout.rows ?? 24;
      const ws = new WebSocket(`${base}/v1/sessions/${encodeURIComponent(id)}/pty?cols=${cols}&rows=${rows}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('unexpected-response', (_req, res) => reject(new Error(`the control plane refused the terminal: ${res.statusCode}`)));
        ws.once('error', reject);
      });
      const raw = process.stdin.isTTY === true;
      if (raw) process.stdin.setRawMode(true);
      process.stdin.on('data', (chunk: Buffer) => ws.send(chunk, { binary: true }));
      const onResize = () => ws.send(JSON.stringify({ type: 'resize', cols: process.stdout.columns, rows: process.stdout.rows }));
      process.on('SIGWINCH', onResize);
      let code = 0;
      ws.on('message', (data, isBinary) => {
        if (isBinary) process.stdout.write(data as Buffer);
        else {
          const msg = JSON.parse(String(data)) as { type: string; code: number | null };
          if (msg.type === 'exit') code = msg.code ?? 1;
        }
      });
      await new Promise<void>((resolve) => ws.once('close', () => resolve()));
      if (raw) process.stdin.setRawMode(false);
      process.off('SIGWINCH', onResize);
      process.stdin.destroy();
      process.exitCode = code;
    });
}
