import { useEffect, useState } from 'preact/hooks';
import { api, get, type Page } from '../api';
import { ago, ms, time } from '../text';
import { Badge, Empty, FilterSelect, Link, Loading, Problem, Section, useLoad } from '../ui';

interface WorkflowStep {
  id: string;
  sequence: number;
  name: string;
  agent_id: string | null;
  language: string;
  needs: string[];
  job_id: string | null;
  status: string;
  started_at?: string | null;
  completed_at?: string | null;
}
interface Workflow {
  id: string;
  name: string;
  agent_id: string | null;
  status: string;
  reason: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  steps?: WorkflowStep[];
}

export function WorkflowsPage() {
  const [status, setStatus] = useState('');
  const list = useLoad((s) => get<Page<Workflow>>('/v1/workflows', { status, limit: 100 }, s), [status]);
  return (
    <Section title="Workflows" actions={<button class="secondary outline small" onClick={list.reload}>Refresh</button>}>
      <FilterSelect label="status" value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value)} options={['queued', 'running', 'succeeded', 'failed', 'canceled']} />
      <Problem error={list.error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped">
        <thead>
          <tr>
            <th>Workflow</th>
            <th>Name</th>
            <th>Status</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((w) => (
            <tr>
              <td>
                <Link to={`/workflows/${w.id}`}>{w.id}</Link>
              </td>
              <td>{w.name}</td>
              <td>
                <Badge value={w.status} /> {w.reason ?? ''}
              </td>
              <td>{ago(w.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="workflows" />
    </Section>
  );
}

/**
 * Steps as a timeline: one bar per step from its start to its end (or now), on the workflow's time axis;
 * steps that never started are shown as a mark at the axis start with their state.
 */
function Timeline({ wf }: { wf: Workflow }) {
  const steps = wf.steps ?? [];
  const now = Date.now();
  const t0 = Date.parse(wf.started_at ?? wf.created_at);
  const t1 = Math.max(t0 + 1, wf.completed_at ? Date.parse(wf.completed_at) : now, ...steps.map((s) => (s.completed_at ? Date.parse(s.completed_at) : 0)));
  const pct = (t: number) => `${(((t - t0) / (t1 - t0)) * 100).toFixed(2)}%`;
  return (
    <div class="timeline" data-testid="timeline">
      {steps.map((s) => {
        const start = s.started_at ? Date.parse(s.started_at) : null;
        const end = s.completed_at ? Date.parse(s.completed_at) : now;
        return (
          <div class="tl-row">
            <div class="tl-label">
              {s.name} <Badge value={s.status} />
              {s.needs.length ? <span class="muted"> ← {s.needs.join(', ')}</span> : null}
            </div>
            <div class="tl-track">
              {start !== null ? (
                <div class={`tl-bar s-${s.status}`} style={{ left: pct(start), width: `max(3px, calc(${pct(end)} - ${pct(start)}))` }} title={ms(end - start)} />
              ) : null}
            </div>
            <div class="tl-job">{s.job_id ? <Link to={`/jobs/${s.job_id}`}>{s.job_id}</Link> : '—'}</div>
          </div>
        );
      })}
      <div class="tl-axis muted">
        <span>{time(new Date(t0).toISOString())}</span>
        <span>{ms(t1 - t0)}</span>
      </div>
    </div>
  );
}

export function WorkflowDetail({ id }: { id: string }) {
  const wf = useLoad((s) => get<Workflow>(`/v1/workflows/${encodeURIComponent(id)}`, undefined, s), [id]);
  const [error, setError] = useState<unknown>();
  // While it runs, the timeline is read again every 2 s.
  const live = wf.data?.status === 'queued' || wf.data?.status === 'running';
  useEffect(() => {
    if (!live) return;
    const t = setInterval(wf.reload, 2000);
    return () => clearInterval(t);
  }, [live, wf.reload]);
  const cancel = async () => {
    setError(undefined);
    try {
      await api('POST', `/v1/workflows/${encodeURIComponent(id)}/cancel`, {});
      wf.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <p>
        <Link to="/workflows">← Workflows</Link>
      </p>
      <Problem error={wf.error ?? error} />
      <Loading when={wf.loading && !wf.data} />
      {wf.data ? (
        <Section
          title={`Workflow ${wf.data.name}`}
          actions={
            <>
              <button class="secondary outline small" onClick={wf.reload}>
                Refresh
              </button>{' '}
              {wf.data.status === 'queued' || wf.data.status === 'running' ? (
                <button class="secondary small" onClick={cancel}>
                  Cancel
                </button>
              ) : null}
            </>
          }
        >
          <p>
            <Badge value={wf.data.status} /> {wf.data.reason ?? ''} · {wf.data.id}
          </p>
          <Timeline wf={wf.data} />
          <Empty items={wf.data.steps} what="steps" />
        </Section>
      ) : null}
    </>
  );
}
