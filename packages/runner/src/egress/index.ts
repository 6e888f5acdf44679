export { AddressGuard, type AddressVerdict } from './address-guard.js';
export { Allowlist, parseAllowRule } from './allowlist.js';
export { egressConfigFromEnv, egressConfigSchema, type EgressConfig } from './config.js';
export { EgressProxy, EGRESS_DIR_INSIDE, type EgressLease, type OpenGateOptions } from './egress-proxy.js';
export type { EgressDenialCount, EgressDenialReason, EgressSummary } from './egress-stats.js';
export { HostResolver } from './resolver.js';
export type { EgressLogger, GateIdentity } from './sandbox-gate.js';
