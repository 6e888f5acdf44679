// The queue drain: N jobs submitted at once (no wait), then run to the end by the local runner, while the
// control plane's resident memory is sampled — it must stay flat, however deep the queue.
import { performance } from 'node:perf_hooks';
import { rssBytes } from '../support/proc.mjs';

const CODE = 'print("hello")';

/** Submits `jobs` jobs (16 submissions in flight), waits until none is queued or running; times and RSS. */
export async function drainQueue({ url, tenantKey, pid }, jobs) {
  const headers = { authorization: `Bearer ${tenantKey}`, 'content-type': 'application/json' };
  const rss = [rssBytes(pid)];
  const sampler = setInterval(() => rss.push(rssBytes(pid)), 250);
  try {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < jobs) {
          next++;
          const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify({ language: 'python', code: CODE }) });
          if (res.status !== 201 && res.status !== 202) throw new Error(`submission refused: ${res.status} ${await res.text()}`);
          await res.arrayBuffer();
        }
      }),
    );
    const submitted = performance.now();
    const left = async (status) => {
      const res = await fetch(`${url}/v1/jobs?status=${status}&limit=1`, { headers });
      return (await res.json()).items.length;
    };
    for (;;) {
      if ((await left('queued')) + (await left('running')) === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const drained = performance.now();
    const failed = await fetch(`${url}/v1/jobs?status=failed&limit=1`, { headers }).then((r) => r.json());
    if (failed.items.length > 0) throw new Error(`a drained job failed: ${JSON.stringify(failed.items[0])}`);
    return {
      jobs,
      submitSeconds: (submitted - t0) / 1000,
      drainSeconds: (drained - t0) / 1000,
      perSecond: jobs / ((drained - t0) / 1000),
      rssStart: rss[0],
      rssMax: Math.max(...rss),
      rssEnd: rss[rss.length - 1],
    };
  } finally {
    clearInterval(sampler);
  }
}
