import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const LOG_MODULE = fileURLToPath(new URL('../dist/log.js', import.meta.url));

/** Logs two lines through createLogger in a child process and answers what it wrote. */
async function logged(format: 'pretty' | 'json'): Promise<string> {
  const script = `
    const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});
    const log = createLogger({ level: 'info', format: ${JSON.stringify(format)} });
    log.info({ job_id: 'job_1', verdict: 'ok', queue_ms: 3, run_ms: 40 }, 'job ended: ok');
    log.warn({ secret_env: { API_TOKEN: 'sekrit' }, body: { code: 'print(1)' }, req: { headers: { authorization: 'Bearer k' } } }, 'careless');
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  return stdout;
}

describe('createLogger', () => {
  it('writes readable lines in pretty format, not JSON', async () => {
    const out = await logged('pretty');
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/INFO.*job ended: ok.*job_id.*job_1/);
    expect(lines[0]!.startsWith('{')).toBe(false);
  });

  it('writes one JSON object per line in json format', async () => {
    const lines = (await logged('json')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ level: 30, msg: 'job ended: ok', job_id: 'job_1', verdict: 'ok', queue_ms: 3, run_ms: 40 });
  });

  it('never writes a secret, a body or a key, whatever a caller passes', async () => {
    for (const format of ['pretty', 'json'] as const) {
      const out = await logged(format);
      expect(out).not.toContain('sekrit');
      expect(out).not.toContain('print(1)');
      expect(out).not.toContain('Bearer k');
    }
  });
});
