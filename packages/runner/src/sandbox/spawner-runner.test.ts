import { afterAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from './bubblewrap-driver.js';
import { killSpawnerForTest } from './spawner-client.js';
import { runSh } from './test-support.js';

const driver = new BubblewrapDriver();
afterAll(() => driver.drain());

describe('one-shot sandboxes through kiln-spawner', () => {
  it('end as system_error when the spawner dies mid-run; the next run restarts it', async () => {
    const first = await runSh(driver, 'echo warm');
    expect(first.verdict).toBe('ok');
    const inFlight = runSh(driver, 'echo started; sleep 30', { wall_time_ms: 20_000 }, {
      onStdout: () => killSpawnerForTest(),
    });
    const r = await inFlight;
    expect(r.verdict).toBe('system_error');
    expect(r.error).toMatch(/kiln-spawner/);
    const again = await runSh(driver, 'cat; echo done', {}, { stdin: 'input\n' });
    expect(again.verdict).toBe('ok');
    expect(again.stdout.toString()).toBe('input\ndone\n');
  });

  it('falls back to child_process.spawn with KILN_SPAWNER=0', async () => {
    process.env.KILN_SPAWNER = '0';
    try {
      const r = await runSh(driver, 'cat; exit 4', {}, { stdin: 'fallback\n' });
      expect(r.verdict).toBe('runtime_error');
      expect(r.exit_status.code).toBe(4);
      expect(r.stdout.toString()).toBe('fallback\n');
    } finally {
      delete process.env.KILN_SPAWNER;
    }
  });
});
