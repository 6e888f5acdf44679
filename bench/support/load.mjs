// Closed-loop load for the benchmarks: `count` calls of `fn` with `concurrency` in flight.
import { performance } from 'node:perf_hooks';

/** Per-call latencies (ms), the elapsed seconds and calls per second. */
export async function load(fn, count, concurrency) {
  const latencies = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const t = performance.now();
        await fn();
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { latencies, seconds, perSecond: count / seconds };
}
