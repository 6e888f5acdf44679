/**
 * Persistent sandboxes (sessions, services): kiln-init as PID 1 of a bubblewrap sandbox, commands over a
 * Unix socket in a bind-mounted control folder. `startPersistentSandbox` is what BubblewrapDriver.start()
 * delegates to.
 */
export { startPersistentSandbox, type StartPersistentOptions } from './start.js';
export { PersistentSandbox } from './persistent-sandbox.js';
export { PortRelay } from './port-relay.js';
export { connectUnixNoFollow, openInitTunnel, runInitCommand } from './init-client.js';
export type { InitCommandOptions, InitCommandResult } from './init-client.js';
export * from './protocol.js';
