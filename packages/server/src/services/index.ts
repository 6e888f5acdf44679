export * from './context.js';
export * from './access.js';
export * from './audit.js';
export * from './auth.js';
export * from './tenants.js';
export * from './agents.js';
export * from './keys.js';
export * from './policies.js';
