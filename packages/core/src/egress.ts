import { z } from 'zod';

/**
 * What one sandbox did through the runner's egress proxy (allowlist egress): counts per connection or
 * plain-HTTP request, and the denials grouped by host, port and reason (the most frequent first,
 * bounded), as the runner reports them with a job's completion and the control plane audits them.
 */
export const egressDenialReasonSchema = z.enum(['not_allowed', 'address_refused', 'resolve_failed', 'connection_cap', 'byte_cap', 'bad_request']);
export type EgressDenialReason = z.infer<typeof egressDenialReasonSchema>;

const count = z.number().int().nonnegative().max(2 ** 53);

export const egressSummarySchema = z.strictObject({
  connections_allowed: count,
  connections_denied: count,
  /** Allowed connections whose host could not be reached. */
  connections_failed: count,
  /** Bytes from the sandbox to the hosts. */
  bytes_sent: count,
  /** Bytes from the hosts to the sandbox. */
  bytes_received: count,
  denied: z
    .array(z.strictObject({ host: z.string().max(260), port: z.number().int().min(0).max(65_535), reason: egressDenialReasonSchema, count }))
    .max(64),
  /** Denial groups left out of `denied`. */
  denied_groups_dropped: count,
});
export type EgressSummary = z.infer<typeof egressSummarySchema>;
export type EgressDenialCount = EgressSummary['denied'][number];
