/**
 * Runs `pass` every `intervalMs` until stopped, one pass at a time (a slow pass delays the next instead
 * of overlapping it); errors go to `onError`, never fatal. Answers a stop that waits for the pass under way.
 */
export function startReaper(pass: () => Promise<unknown>, intervalMs: number, onError: (err: unknown) => void): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(pass).catch(onError);
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
