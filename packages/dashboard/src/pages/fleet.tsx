import { useEffect, useState } from 'preact/hooks';
import { api, get, type Page } from '../api';
import { ago, bytes, time } from '../text';
import { Badge, Empty, Facts, Link, Loading, Problem, Section, useLoad } from '../ui';

const LOAD_RUNNERS = 50;

interface Tenant {
  id: string;
  name: string;
  status: string;
  created_at: string;
}
interface Runner {
  id: string;
  name: string;
  status: string;
  zone: string;
  capacity: number;
  draining: boolean;
  languages: { name: string; version: string }[] | string[];
  last_heartbeat_at: string | null;
  created_at: string;
}
interface Sandbox {
  id: string;
  kind: string;
  job_id: string | null;
  session_id: string | null;
  service_id: string | null;
  runner_id: string;
  status: string;
  created_at: string;
  terminated_at: string | null;
}

function Quota({ tenantId }: { tenantId: string }) {
  const q = useLoad((s) => get<Record<string, unknown>>(`/v1/tenants/${encodeURIComponent(tenantId)}/quota`, undefined, s), [tenantId]);
  if (q.error) return <Problem error={q.error} />;
  if (!q.data) return <Loading when />;
  const flat: [string, string][] = [];
  const walk = (prefix: string, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    else flat.push([prefix, v === null ? '—' : prefix.endsWith('bytes') && typeof v === 'number' ? bytes(v) : String(v)]);
  };
  const { overrides, tenant_id: _t, ...inForce } = q.data;
  walk('', inForce);
  return (
    <div data-testid="quota">
      <h3>Quota in force</h3>
      <Facts rows={flat} />
      <QuotaOverrides tenantId={tenantId} overrides={overrides} onSaved={q.reload} />
    </div>
  );
}

/** The operator's overrides as JSON (PUT replaces them; values left out follow the configured defaults). */
function QuotaOverrides({ tenantId, overrides, onSaved }: { tenantId: string; overrides: unknown; onSaved: () => void }) {
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const save = async (e: Event) => {
    e.preventDefault();
    const text = String(new FormData(e.currentTarget as HTMLFormElement).get('overrides') ?? '');
    setError(undefined);
    setSaved(false);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      return setError(`not JSON: ${String(err)}`);
    }
    try {
      await api('PUT', `/v1/tenants/${encodeURIComponent(tenantId)}/quota`, body);
      setSaved(true);
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form onSubmit={save} aria-label="quota overrides">
      <h4>Operator overrides</h4>
      <textarea name="overrides" rows={6} class="mono" spellcheck={false} defaultValue={JSON.stringify(overrides ?? {}, null, 2)} />
      <button type="submit" class="small">
        Replace overrides
      </button>
      {saved ? <span class="muted"> saved</span> : null}
      <Problem error={error} />
    </form>
  );
}

export function TenantsPage({ selected }: { selected: string | undefined }) {
  const list = useLoad((s) => get<Page<Tenant>>('/v1/tenants', { limit: 200 }, s), []);
  const [error, setError] = useState<unknown>();
  const setStatus = async (t: Tenant, status: 'active' | 'suspended') => {
    setError(undefined);
    try {
      await api('PATCH', `/v1/tenants/${encodeURIComponent(t.id)}`, { status });
      list.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <Section title="Tenants" actions={<button class="secondary outline small" onClick={list.reload}>Refresh</button>}>
      <Problem error={list.error ?? error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped">
        <thead>
          <tr>
            <th>Name</th>
            <th>Id</th>
            <th>Status</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((t) => (
            <tr>
              <td>
                <Link to={`/tenants/${t.id}`}>{t.name}</Link>
              </td>
              <td class="mono">{t.id}</td>
              <td>
                <Badge value={t.status} />
              </td>
              <td>{time(t.created_at)}</td>
              <td>
                {t.status === 'active' ? (
                  <button class="secondary small" onClick={() => void setStatus(t, 'suspended')}>
                    Suspend
                  </button>
                ) : (
                  <button class="small" onClick={() => void setStatus(t, 'active')}>
                    Resume
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="tenants" />
      {selected ? <Quota tenantId={selected} /> : <p class="muted">Pick a tenant to see its quota.</p>}
    </Section>
  );
}

/** Heartbeat age ticks every second on screen, from the last heartbeat the API reported. */
function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

export function RunnersPage() {
  const runners = useLoad((s) => get<Page<Runner>>('/v1/runners', { limit: 200 }, s), []);
  // Load: the runner's live sandbox instances (provisioning or running: jobs, sessions) against its
  // capacity, from /v1/sandboxes?runner_id=&status= (indexed). Asked for the first 50 runners only, so a
  // large fleet's page does not send hundreds of requests every refresh.
  const load = useLoad(
    async (signal) => {
      const shown = (runners.data?.items ?? []).slice(0, LOAD_RUNNERS);
      const counts = await Promise.all(
        shown.map(async (r) => {
          const live = await Promise.all(
            ['provisioning', 'running'].map((status) => get<Page<Sandbox>>('/v1/sandboxes', { runner_id: r.id, status, limit: 200 }, signal)),
          );
          return [r.id, live.reduce((n, p) => n + p.items.length, 0)] as const;
        }),
      );
      return Object.fromEntries(counts) as Record<string, number>;
    },
    [runners.data],
  );
  const [error, setError] = useState<unknown>();
  const now = useNow();
  // The fleet changes on its own: read it again every 5 s while the page is open.
  useEffect(() => {
    const t = setInterval(runners.reload, 5000);
    return () => clearInterval(t);
  }, [runners.reload]);
  const drain = async (r: Runner) => {
    setError(undefined);
    try {
      await api('POST', `/v1/runners/${encodeURIComponent(r.id)}/drain`, {});
      runners.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <Section title="Runners" actions={<button class="secondary outline small" onClick={runners.reload}>Refresh</button>}>
      <Problem error={runners.error ?? error ?? load.error} />
      <Loading when={runners.loading && !runners.data} />
      <table class="striped" data-testid="runners-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Zone</th>
            <th>Status</th>
            <th>Load / capacity</th>
            <th>Heartbeat age</th>
            <th>Languages</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(runners.data?.items ?? []).map((r) => {
            const used = load.data?.[r.id];
            return (
              <tr data-runner={r.name}>
                <td>
                  <Link to={`/sandboxes/runner/${r.id}`}>{r.name}</Link>
                </td>
                <td>{r.zone}</td>
                <td>
                  <Badge value={r.status} /> {r.draining ? <Badge value="draining" /> : null}
                </td>
                <td>
                  <progress value={used ?? 0} max={Math.max(1, r.capacity)} /> {used ?? '—'} / {r.capacity}
                </td>
                <td>{r.last_heartbeat_at ? `${Math.max(0, Math.round((now - Date.parse(r.last_heartbeat_at)) / 1000))} s` : '—'}</td>
                <td class="small">{r.languages.map((l) => (typeof l === 'string' ? l : l.name)).join(', ')}</td>
                <td>
                  {r.draining ? (
                    <span class="muted">draining</span>
                  ) : (
                    <button class="secondary small" onClick={() => void drain(r)}>
                      Drain
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <Empty items={runners.data?.items} what="runners" />
    </Section>
  );
}

export function SandboxesPage({ runnerId }: { runnerId: string | undefined }) {
  const [cursor, setCursor] = useState<string | null>(null);
  const list = useLoad((s) => get<Page<Sandbox>>('/v1/sandboxes', { runner_id: runnerId, limit: 100, cursor }, s), [runnerId, cursor]);
  return (
    <Section title={runnerId ? `Sandboxes on ${runnerId}` : 'Sandboxes'} actions={<button class="secondary outline small" onClick={list.reload}>Refresh</button>}>
      <Problem error={list.error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped">
        <thead>
          <tr>
            <th>Sandbox</th>
            <th>Kind</th>
            <th>For</th>
            <th>Runner</th>
            <th>Status</th>
            <th>Created</th>
            <th>Ended</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((s) => (
            <tr>
              <td class="mono">{s.id}</td>
              <td>{s.kind}</td>
              <td class="mono">{s.job_id ?? s.session_id ?? s.service_id ?? '—'}</td>
              <td class="mono">{s.runner_id}</td>
              <td>
                <Badge value={s.status} />
              </td>
              <td>{ago(s.created_at)}</td>
              <td>{time(s.terminated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="sandboxes" />
      {list.data?.next_cursor ? <button class="secondary small" onClick={() => setCursor(list.data!.next_cursor)}>Older</button> : null}
    </Section>
  );
}
