import { useState } from 'preact/hooks';
import { get, type Page, type Whoami } from '../api';
import { time } from '../text';
import { Badge, Empty, Loading, Problem, Section, useLoad } from '../ui';

interface AuditEvent {
  id: string;
  tenant_id: string | null;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  timestamp: string;
  outcome: string;
  details: unknown;
}
interface Verify {
  ok: boolean;
  count: number;
  key_id: string | null;
  keyed_from_seq?: number | null;
  checkpoint: { seq: number; hash: string; at: string } | null;
  broken_event_id?: string | null;
  reason?: string | null;
}

const FILTERS = ['tenant_id', 'actor_id', 'action', 'resource_type', 'resource_id', 'outcome', 'since', 'until'] as const;

export function AuditPage({ me }: { me: Whoami }) {
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [cursor, setCursor] = useState<string | null>(null);
  const events = useLoad((s) => get<Page<AuditEvent>>('/v1/audit-events', { ...filters, limit: 100, cursor }, s), [JSON.stringify(filters), cursor]);
  const [verify, setVerify] = useState<{ answer?: Verify; error?: unknown; busy?: boolean }>({});
  const apply = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const next: Record<string, string> = {};
    for (const f of FILTERS) {
      const v = String(data.get(f) ?? '').trim();
      // datetime-local has no zone: it is the browser's local time, sent as RFC 3339.
      if (v) next[f] = f === 'since' || f === 'until' ? new Date(v).toISOString() : v;
    }
    setCursor(null);
    setFilters(next);
  };
  const runVerify = async () => {
    setVerify({ busy: true });
    try {
      const tenant = me.kind === 'operator' ? filters.tenant_id : undefined;
      setVerify({ answer: await get<Verify>('/v1/audit-events/verify', { tenant_id: tenant }) });
    } catch (error) {
      setVerify({ error });
    }
  };
  return (
    <Section
      title="Audit"
      actions={
        <button class="small" onClick={runVerify} aria-busy={verify.busy} data-testid="verify">
          Verify chain{me.kind === 'operator' ? ' (of the tenant filtered on)' : ''}
        </button>
      }
    >
      {verify.answer ? (
        <p class={verify.answer.ok ? 'ok-box' : 'problem'} role="status" data-testid="verify-answer">
          {verify.answer.ok
            ? `Chain intact: ${verify.answer.count} events checked${verify.answer.checkpoint ? `, matches checkpoint #${verify.answer.checkpoint.seq}` : ''}.`
            : `Chain broken at ${verify.answer.broken_event_id ?? '?'}: ${verify.answer.reason ?? ''}`}
        </p>
      ) : null}
      <Problem error={verify.error} />
      <form class="filters grid" onSubmit={apply} aria-label="filter audit events">
        {me.kind === 'operator' ? <input name="tenant_id" placeholder="tenant id" aria-label="tenant id" /> : null}
        <input name="actor_id" placeholder="actor" aria-label="actor" />
        <input name="action" placeholder="action (job.create)" aria-label="action" />
        <input name="resource_type" placeholder="resource type" aria-label="resource type" />
        <input name="resource_id" placeholder="resource id" aria-label="resource id" />
        <select name="outcome" aria-label="outcome">
          <option value="">any outcome</option>
          <option value="success">success</option>
          <option value="denied">denied</option>
          <option value="error">error</option>
        </select>
        <input name="since" type="datetime-local" aria-label="since" />
        <input name="until" type="datetime-local" aria-label="until" />
        <button type="submit">Filter</button>
      </form>
      <Problem error={events.error} />
      <Loading when={events.loading && !events.data} />
      <table class="striped" data-testid="audit-table">
        <thead>
          <tr>
            <th>When</th>
            <th>Actor</th>
            <th>Action</th>
            <th>Resource</th>
            <th>Outcome</th>
            <th>Details</th>
          </tr>
        </thead>
        <tbody>
          {(events.data?.items ?? []).map((e) => (
            <tr>
              <td>{time(e.timestamp)}</td>
              <td class="mono">{e.actor_id}</td>
              <td>{e.action}</td>
              <td class="mono">
                {e.resource_type} {e.resource_id ?? ''}
              </td>
              <td>
                <Badge value={e.outcome} />
              </td>
              <td class="mono small">{e.details ? JSON.stringify(e.details).slice(0, 300) : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={events.data?.items} what="audit events" />
      {events.data?.next_cursor ? <button class="secondary small" onClick={() => setCursor(events.data!.next_cursor)}>Older</button> : null}
    </Section>
  );
}
