import type { Limits } from '@kiln/core';
import type { SandboxDriver, SandboxNetwork } from '../sandbox/driver.js';
import { PersistentSandbox } from '../sandbox/persistent/index.js';

export interface SessionSandboxSpec {
  limits: Limits;
  network?: SandboxNetwork;
  env: Record<string, string>;
  files: { path: string; content: Buffer; mode?: number }[];
}

/**
 * The one place a session's sandbox comes from: today a fresh persistent sandbox from the driver. A
 * pool of pre-built sandboxes (packages/runner/src/pool/) can serve sessions by answering here, so
 * nothing else on the session path changes.
 */
export async function startSessionSandbox(driver: SandboxDriver, spec: SessionSandboxSpec): Promise<PersistentSandbox> {
  const handle = await driver.start(spec);
  if (!(handle instanceof PersistentSandbox)) {
    await handle.destroy();
    throw new Error('the sandbox driver did not start a persistent sandbox');
  }
  return handle;
}
