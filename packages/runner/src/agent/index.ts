export * from './agent.js';
export * from './artifact-selection.js';
export * from './control-plane-client.js';
export { assertPrivate } from './credential-file.js';
export * from './output-batcher.js';
export * from './start-runner.js';
export * from './host-capacity.js';
