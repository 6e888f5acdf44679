import { JobFlag, mayBe } from '../../../domain/job-flags.js';
import type { Principal } from '../../context.js';
import type { JobDeps } from '../../job-deps.js';
import { findJudge0SubmissionOfJob, moveJudge0Callback } from '../../../store/judge0.js';
import { sendCallback } from './callback.js';
import { JUDGE0_DEFAULT_FIELDS, judge0View } from './submissions.js';

/**
 * Sends each submission's callback once all its runs ended: the replica that records the last run's
 * end claims the callback (pending → sending, so two replicas never both send), PUTs the submission
 * as `GET` would answer it, and records sent or failed. A control plane that stops between the claim
 * and the answer leaves `sending`: at most once, never twice.
 */
export function dispatchJudge0Callbacks(deps: JobDeps, onError: (err: unknown) => void): void {
  deps.events.on((event) => {
    if (event.type !== 'job_ended' || !mayBe(event.flags, JobFlag.judge0Run)) return;
    void (async () => {
      const row = await findJudge0SubmissionOfJob(deps.store, event.jobId);
      if (!row || row.callback_state !== 'pending' || !row.callback_url) return;
      const principal: Principal = { kind: 'tenant', tenantId: row.tenant_id, keyId: 'judge0-callback', tenantStatus: 'active' };
      const stored = JSON.parse(row.request) as { base64_encoded: boolean };
      const view = await judge0View(deps, principal, row, JUDGE0_DEFAULT_FIELDS, stored.base64_encoded);
      if ((view.status as { id: number }).id <= 2) return; // other runs still going
      if (!(await moveJudge0Callback(deps.store, row.token, 'pending', 'sending'))) return;
      let outcome: 'sent' | 'failed' = 'failed';
      try {
        const status = await sendCallback(new URL(row.callback_url), view);
        if (status >= 200 && status < 300) outcome = 'sent';
      } catch (err) {
        onError(err);
      }
      await moveJudge0Callback(deps.store, row.token, 'sending', outcome);
    })().catch(onError);
  });
}
