export * from './ids.js';
export * from './clock.js';
export * from './errors.js';
export * from './limits.js';
export * from './policy.js';
export * from './validation.js';
export * from './verdicts.js';
