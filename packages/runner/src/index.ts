export * from './sandbox/index.js';
export * from './languages/index.js';
export * from './agent/index.js';
export * from './sessions/session-host.js';
export * from './pool/index.js';
export * from './egress/index.js';
