export * from './catalog.js';
export * from './spec.js';
export * from './detect.js';
