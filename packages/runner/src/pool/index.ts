export { PooledDriver, type PooledDriverOptions } from './pooled-driver.js';
export { WarmPool, type PoolRoom, type PoolShapeStats, type PoolStats, type WarmPoolOptions } from './warm-pool.js';
export { shapeKey, shapeLabel, type SandboxShape } from './shape.js';
