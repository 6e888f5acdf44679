export * from './catalog/index.js';
export * from './spec.js';
export * from './detect.js';
export * from './samples.js';
