export * from './agent.js';
export * from './artifact-selection.js';
export * from './control-plane-client.js';
export * from './output-batcher.js';
export * from './start-runner.js';
export * from './host-capacity.js';
