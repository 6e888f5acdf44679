import type { CompatConfig } from '../../config.js';
import type { JobDeps } from '../../services/job-deps.js';
import type { RouteSpec } from '../route.js';
import { judge0Routes } from './judge0/judge0-routes.js';
import { pistonRoutes } from './piston/piston-routes.js';

/** The faces as configured by default: Piston keyed, Judge0 at /judge0 keyed, no callback hosts. */
export const DEFAULT_COMPAT_CONFIG: CompatConfig = {
  pistonAgentId: undefined,
  judge0Prefix: '/judge0',
  judge0AgentId: undefined,
  judge0CallbackHosts: [],
};

/** The Piston and Judge0 faces over kiln's jobs, as the operator configured them. */
export function compatRoutes(deps: JobDeps, options: CompatConfig): RouteSpec[] {
  return [
    ...pistonRoutes(deps, { agentId: options.pistonAgentId }),
    ...judge0Routes(deps, { prefix: options.judge0Prefix, agentId: options.judge0AgentId, callbackHosts: options.judge0CallbackHosts }),
  ];
}
