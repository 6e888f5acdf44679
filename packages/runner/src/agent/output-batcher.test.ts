import type { JobEvent } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import { ControlPlaneError } from './control-plane-client.js';
import { OutputBatcher } from './output-batcher.js';

const logger = () => {
  const warnings: string[] = [];
  return { warnings, info: () => {}, warn: (_: object, msg?: string) => void warnings.push(msg ?? ''), error: () => {} };
};

/** What the control plane would have received: each request's size and the output in order. */
function recorder() {
  const bodies: string[] = [];
  const events: JobEvent[] = [];
  return {
    bodies,
    events,
    send: async (batch: JobEvent[]) => {
      bodies.push(JSON.stringify({ attempt: 1, events: batch }));
      events.push(...batch);
    },
    output: () =>
      Buffer.concat(events.flatMap((e) => (e.type === 'output' ? [Buffer.from(e.data_base64, 'base64')] : []))).toString(),
  };
}

describe('OutputBatcher', () => {
  it('keeps every request under the body limit when 840 KB arrive at once (the 413 that lost all output)', async () => {
    const sent = recorder();
    const batcher = new OutputBatcher({ send: sent.send, logger: logger(), jobId: 'job_1', maxRequestBytes: 1024 * 1024 });
    const text = Array.from({ length: 12_000 }, (_, i) => `line ${i} ${'.'.repeat(60)}\n`).join('');
    expect(text.length).toBeGreaterThan(800_000);
    // The sandbox's pipe hands over 64 KiB reads faster than one batch interval.
    for (let at = 0; at < text.length; at += 65_536) batcher.pushOutput('stdout', Buffer.from(text.slice(at, at + 65_536)));
    await batcher.flush();
    expect(sent.bodies.length).toBeGreaterThan(1);
    for (const body of sent.bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(512 * 1024);
    expect(sent.output() === text, 'every byte, in order').toBe(true);
  });

  it('splits one chunk bigger than a whole request under a small limit', async () => {
    const sent = recorder();
    const batcher = new OutputBatcher({ send: sent.send, logger: logger(), jobId: 'job_1', maxRequestBytes: 16 * 1024 });
    const bytes = Buffer.alloc(300_000, 'z');
    batcher.pushOutput('stderr', bytes);
    await batcher.flush();
    for (const body of sent.bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(batcher.maxBatchRequestBytes);
    expect(batcher.maxBatchRequestBytes).toBeLessThan(16 * 1024);
    expect(sent.output() === bytes.toString(), 'every byte, in order').toBe(true);
  });

  it('announces a refused batch as output_lost in the next one, and logs it', async () => {
    const sent = recorder();
    const log = logger();
    let refuse = true;
    const batcher = new OutputBatcher({
      send: async (batch) => {
        if (refuse) {
          refuse = false;
          throw new ControlPlaneError(413, 'PAYLOAD_TOO_LARGE', 'too large');
        }
        await sent.send(batch);
      },
      logger: log,
      jobId: 'job_1',
    });
    batcher.pushOutput('stdout', Buffer.from('lost line\n'));
    await batcher.flush();
    batcher.pushOutput('stdout', Buffer.from('kept line\n'));
    await batcher.flush();
    expect(sent.events[0]).toEqual({ type: 'output_lost', stream: 'stdout', bytes: 10, reason: 'runner_refused' });
    expect(sent.output()).toBe('kept line\n');
    expect(log.warnings.some((w) => /not delivered/.test(w))).toBe(true);
  });

  it('holds a bounded backlog while the control plane is slow, and says how much it let go', async () => {
    const sent = recorder();
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    let held = 0;
    const batcher = new OutputBatcher({
      send: async (batch) => {
        held++;
        await slow;
        await sent.send(batch);
      },
      logger: logger(),
      jobId: 'job_1',
      maxBatchBytes: 64 * 1024,
      maxBacklogBytes: 8 * 64 * 1024,
    });
    for (let i = 0; i < 160; i++) batcher.pushOutput('stdout', Buffer.alloc(65_536, 'q')); // 10 MiB
    await new Promise((r) => setTimeout(r, 100));
    release();
    await batcher.flush();
    const delivered = Buffer.byteLength(sent.output());
    const lost = sent.events.filter((e) => e.type === 'output_lost').reduce((n, e) => n + (e.type === 'output_lost' ? e.bytes : 0), 0);
    expect(delivered).toBeLessThanOrEqual(8 * 64 * 1024 + 65_536);
    expect(delivered + lost).toBe(160 * 65_536);
    expect(held).toBeGreaterThan(0);
    expect(sent.events.some((e) => e.type === 'output_lost' && e.reason === 'runner_backlog')).toBe(true);
  });

  it('stops sending once the attempt is stale (409)', async () => {
    let calls = 0;
    const batcher = new OutputBatcher({
      send: async () => {
        calls++;
        throw new ControlPlaneError(409, 'STALE_ATTEMPT', 'stale');
      },
      logger: logger(),
      jobId: 'job_1',
    });
    batcher.pushOutput('stdout', Buffer.from('a'));
    await batcher.flush();
    batcher.pushOutput('stdout', Buffer.from('b'));
    await batcher.flush();
    expect(calls).toBe(1);
  });

  describe('at the end of a job whose report carries its output', () => {
    it('leaves a short job\'s pending output to the report: no request, nothing counted as carried', async () => {
      const sent = recorder();
      const batcher = new OutputBatcher({ send: sent.send, logger: logger(), jobId: 'job_1' });
      batcher.push({ type: 'started' });
      batcher.pushOutput('stdout', Buffer.from('1\n'));
      expect(await batcher.finishForReport()).toEqual({ stdout: 0, stderr: 0 });
      await new Promise((r) => setTimeout(r, 100)); // no timer left to send it later
      expect(sent.bodies).toEqual([]);
    });

    it('leaves only the rest of one stream to the report, after what went out before', async () => {
      const sent = recorder();
      const batcher = new OutputBatcher({ send: sent.send, logger: logger(), jobId: 'job_1' });
      batcher.pushOutput('stderr', Buffer.from('warning\n'));
      batcher.pushOutput('stdout', Buffer.from('first\n'));
      await batcher.flush();
      batcher.pushOutput('stdout', Buffer.from('last\n'));
      expect(await batcher.finishForReport()).toEqual({ stdout: 6, stderr: 8 });
      expect(sent.output()).toBe('warning\nfirst\n');
    });

    it('sends pending output of both streams, so watchers keep the order it was written in', async () => {
      const sent = recorder();
      const batcher = new OutputBatcher({ send: sent.send, logger: logger(), jobId: 'job_1' });
      batcher.pushOutput('stdout', Buffer.from('out\n'));
      batcher.pushOutput('stderr', Buffer.from('err\n'));
      expect(await batcher.finishForReport()).toEqual({ stdout: 4, stderr: 4 });
      expect(sent.output()).toBe('out\nerr\n');
    });

    it('sends everything, losses announced, once output was lost', async () => {
      const sent = recorder();
      let refuse = true;
      const batcher = new OutputBatcher({
        send: async (batch) => {
          await new Promise((r) => setTimeout(r, 20));
          if (refuse) {
            refuse = false;
            throw new ControlPlaneError(413, 'PAYLOAD_TOO_LARGE', 'too large');
          }
          await sent.send(batch);
        },
        logger: logger(),
        jobId: 'job_1',
      });
      batcher.pushOutput('stdout', Buffer.from('refused\n'));
      await batcher.flush();
      batcher.pushOutput('stdout', Buffer.from('pending\n'));
      expect(await batcher.finishForReport()).toEqual({ stdout: 16, stderr: 0 });
      expect(sent.events).toEqual([
        { type: 'output_lost', stream: 'stdout', bytes: 8, reason: 'runner_refused' },
        { type: 'output', stream: 'stdout', data_base64: Buffer.from('pending\n').toString('base64') },
      ]);
    });
  });
});
