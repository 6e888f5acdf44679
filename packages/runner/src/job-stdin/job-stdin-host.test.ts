import { spawn, type ChildProcess } from 'node:child_process';
import { JOB_STDIN_CHUNK_MAX_BYTES } from '@kiln/core';
import { afterEach, describe, expect, it } from 'vitest';
import { pipeWriter } from '../sandbox/one-shot.js';
import { JobStdinHost } from './job-stdin-host.js';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** A real program on a real pipe, with the one-shot driver's writer of its stdin. */
function program(command: string, args: string[]) {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  children.push(child);
  // As the one-shot driver does: a program that exits unread makes writes fail with EPIPE, not the run.
  child.stdin!.on('error', () => {});
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return { child, writer: pipeWriter(child.stdin!), output: () => out, exited };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

describe('JobStdinHost', () => {
  it('waits for the program to start, writes in order, and eof closes its stdin', async () => {
    const host = new JobStdinHost(5000);
    const cat = program('cat', []);
    // Sent before the program is up (the control plane sees the job running from its lease).
    const early = host.write('job_a', { attempt: 1, data_base64: b64('one\n'), eof: false });
    host.attach('job_a', 1, cat.writer);
    expect(await early).toEqual({ written_bytes: 4, eof: false });
    await host.write('job_a', { attempt: 1, data_base64: b64('two\n'), eof: true });
    await cat.exited;
    expect(cat.output()).toBe('one\ntwo\n');
    await expect(host.write('job_a', { attempt: 1, data_base64: b64('late'), eof: false })).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('refuses a stale attempt, and a job whose run is over', async () => {
    const host = new JobStdinHost(200);
    const cat = program('cat', []);
    host.attach('job_b', 2, cat.writer);
    await expect(host.write('job_b', { attempt: 1, data_base64: b64('x'), eof: false })).rejects.toMatchObject({ code: 'CONFLICT' });
    host.detach('job_b', 2);
    await expect(host.write('job_b', { attempt: 2, data_base64: b64('x'), eof: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(cat.output()).toBe('');
  });

  it('holds at most one chunk for a program that does not read: a second caller is refused, not buffered', async () => {
    const host = new JobStdinHost(200);
    const sleeper = program('sleep', ['30']);
    host.attach('job_c', 1, sleeper.writer);
    const chunk = b64(Buffer.alloc(JOB_STDIN_CHUNK_MAX_BYTES, 120));
    // The pipe's own buffer (a socket pair's, a few hundred KiB) takes the first chunks; then one waits
    // for the program to read, and its answer with it.
    let blocked: Promise<unknown> | undefined;
    let answered = false;
    for (let i = 0; i < 64 && !blocked; i++) {
      const write = host.write('job_c', { attempt: 1, data_base64: chunk, eof: false });
      const settled = await Promise.race([write.then(() => true), new Promise((r) => setTimeout(() => r(false), 100))]);
      if (!settled) {
        blocked = write;
        void write.then(() => (answered = true), () => (answered = true));
      }
    }
    expect(blocked).toBeDefined();
    expect(answered).toBe(false);
    await expect(host.write('job_c', { attempt: 1, data_base64: b64('more'), eof: false })).rejects.toMatchObject({ code: 'CONFLICT' });
    // The program ends: the waiting write is let go, never left hanging.
    sleeper.child.kill('SIGKILL');
    await blocked.catch(() => {});
    expect(answered).toBe(true);
  });

  it('refuses a chunk larger than one write', async () => {
    const host = new JobStdinHost(200);
    await expect(host.write('job_d', { attempt: 1, data_base64: b64(Buffer.alloc(JOB_STDIN_CHUNK_MAX_BYTES + 1)), eof: false })).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });
  });
});
