import type { CompatConfig } from '../../config.js';
import type { AuthSecrets } from '../../services/auth.js';
import type { JobDeps } from '../../services/job-deps.js';
import type { RouteSpec } from '../route.js';
import { dispatchJudge0Callbacks } from '../../services/compat/judge0/callback-dispatch.js';
import { judge0Routes } from './judge0/judge0-routes.js';
import { pistonRoutes } from './piston/piston-routes.js';

/** The Piston and Judge0 faces over kiln's jobs, as the operator configured them. */
export function compatRoutes(deps: JobDeps, options: CompatConfig & { secrets: AuthSecrets; onError: (err: unknown) => void }): RouteSpec[] {
  dispatchJudge0Callbacks(deps, options.onError);
  return [
    ...pistonRoutes(deps, { agentId: options.pistonAgentId, secrets: () => options.secrets }),
    ...judge0Routes(deps, {
      prefix: options.judge0Prefix,
      agentId: options.judge0AgentId,
      callbackHosts: options.judge0CallbackHosts,
      secrets: () => options.secrets,
    }),
  ];
}
