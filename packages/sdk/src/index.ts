export * from './client.js';
export * from './errors.js';
export { parseEventStream, type ServerSentEvent } from './sse.js';
export * from './sandbox.js';
