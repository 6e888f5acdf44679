import type { CompatConfig } from '../../config.js';
import type { AuthSecrets } from '../../services/auth.js';
import type { JobDeps } from '../../services/job-deps.js';
import type { RouteSpec } from '../route.js';
import { pistonRoutes } from './piston/piston-routes.js';

/** The Piston and Judge0 faces over kiln's jobs, as the operator configured them. */
export function compatRoutes(deps: JobDeps, options: CompatConfig & { secrets: AuthSecrets }): RouteSpec[] {
  return [...pistonRoutes(deps, { agentId: options.pistonAgentId, secrets: () => options.secrets })];
}
