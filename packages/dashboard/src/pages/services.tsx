import { useEffect, useState } from 'preact/hooks';
import { api, get, type Page, type Whoami } from '../api';
import { LiveStream } from '../live-stream';
import { ago, time } from '../text';
import { Badge, Empty, Facts, FilterSelect, Link, Loading, Problem, Section, useLoad } from '../ui';

interface Service {
  id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  status: string;
  reason: string | null;
  language: string | null;
  command: string | string[];
  port: number;
  restart: string;
  restarts: number;
  public: boolean;
  zone: string | null;
  proxy_url: string;
  runner_id: string | null;
  sandbox_id: string | null;
  created_at: string;
  started_at: string | null;
  stopped_at: string | null;
  expires_at: string;
  last_activity_at: string;
}
interface ServiceToken {
  url: string;
  expires_at: string;
}

// The API's enum (packages/core: SERVICE_STATUSES); the page does not bundle zod for it.
const STATUSES = ['starting', 'running', 'stopped', 'terminated'];
const live = (s: Service) => s.status === 'starting' || s.status === 'running';
/** How long the token behind "Open" lasts: long enough to use the page, short enough not to matter if kept. */
const OPEN_TOKEN_TTL_SECONDS = 600;

const commandText = (c: string | string[]) => (Array.isArray(c) ? c.join(' ') : c);

export function ServicesPage({ me }: { me: Whoami }) {
  const [filters, setFilters] = useState({ status: '', agent_id: '' });
  const [cursor, setCursor] = useState<string | null>(null);
  const list = useLoad((s) => get<Page<Service>>('/v1/services', { ...filters, limit: 50, cursor }, s), [JSON.stringify(filters), cursor]);
  const agents = useLoad((s) => (me.kind === 'tenant' ? get<Page<{ id: string; name: string }>>('/v1/agents', { limit: 200 }, s) : Promise.resolve(null)), []);
  // Services change state on their own (running, crashed, TTL): the first page is read again every 5 s.
  useEffect(() => {
    if (cursor) return;
    const t = setInterval(list.reload, 5000);
    return () => clearInterval(t);
  }, [cursor]);
  const set = (k: keyof typeof filters) => (e: Event) => {
    setCursor(null);
    setFilters({ ...filters, [k]: (e.currentTarget as HTMLSelectElement).value });
  };
  return (
    <Section title="Services" actions={<button class="secondary outline small" onClick={list.reload}>Refresh</button>}>
      <form class="filters grid" aria-label="filter services" onSubmit={(e) => e.preventDefault()}>
        <FilterSelect name="status" label="status" onChange={set('status')} value={filters.status} options={STATUSES} />
        {me.kind === 'tenant' ? (
          <FilterSelect
            name="agent_id"
            label="agent"
            onChange={set('agent_id')}
            value={filters.agent_id}
            options={(agents.data?.items ?? []).map((a) => ({ value: a.id, text: a.name }))}
          />
        ) : null}
      </form>
      <Problem error={list.error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped" data-testid="services-table">
        <thead>
          <tr>
            <th>Service</th>
            <th>Status</th>
            <th>Port</th>
            <th>Command</th>
            <th>Agent</th>
            <th>Restarts</th>
            <th>Last activity</th>
            <th>Expires</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((s) => (
            <tr data-service={s.id}>
              <td>
                <Link to={`/services/${s.id}`}>{s.id}</Link>
              </td>
              <td>
                <Badge value={s.status} /> {s.reason ?? ''}
              </td>
              <td>{s.port}</td>
              <td class="mono small">{commandText(s.command)}</td>
              <td>{s.agent_id ?? '—'}</td>
              <td>{s.restarts}</td>
              <td title={time(s.last_activity_at)}>{ago(s.last_activity_at)}</td>
              <td>{time(s.expires_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="services" />
      {list.data?.next_cursor ? <button class="secondary small" onClick={() => setCursor(list.data!.next_cursor)}>Older</button> : null}
      {cursor ? <button class="secondary outline small" onClick={() => setCursor(null)}>Newest</button> : null}
    </Section>
  );
}

/**
 * Opens the service in a new tab with a short-lived token scoped to it (`?kiln_token=`, which the proxy
 * trades for an HttpOnly cookie and a 303 to the clean URL). The kiln key never goes in a URL. The tab is
 * opened before the token request, while the click still counts as the user's (popup blockers), and cut
 * from this page (`opener = null`) so the service's page cannot script or navigate the dashboard.
 */
async function openService(id: string): Promise<void> {
  const tab = window.open('about:blank', '_blank');
  if (tab) tab.opener = null;
  try {
    const token = await api<ServiceToken>('POST', `/v1/services/${encodeURIComponent(id)}/tokens`, { ttl_seconds: OPEN_TOKEN_TTL_SECONDS });
    if (!tab) throw new Error('the browser blocked the new tab: allow pop-ups for this page');
    tab.location.replace(token.url);
  } catch (err) {
    tab?.close();
    throw err;
  }
}

export function ServiceDetail({ id }: { id: string }) {
  const service = useLoad((s) => get<Service>(`/v1/services/${encodeURIComponent(id)}`, undefined, s), [id]);
  const [actionError, setActionError] = useState<unknown>();
  const [busy, setBusy] = useState<'' | 'stop' | 'open'>('');
  const s = service.data;
  const isLive = s ? live(s) : false;
  // While it lives, its state moves on the runner (running, restarts, last activity): read it every 2 s.
  useEffect(() => {
    if (!isLive) return;
    const t = setInterval(service.reload, 2000);
    return () => clearInterval(t);
  }, [isLive]);
  const act = (what: 'stop' | 'open', fn: () => Promise<unknown>) => async () => {
    setActionError(undefined);
    setBusy(what);
    try {
      await fn();
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy('');
      service.reload();
    }
  };
  const stop = act('stop', () => api<Service>('POST', `/v1/services/${encodeURIComponent(id)}/stop`, {}));
  const open = act('open', () => openService(id));
  return (
    <>
      <p>
        <Link to="/services">← Services</Link>
      </p>
      <Problem error={service.error} />
      {s ? (
        <Section
          title={`Service ${s.id}`}
          actions={
            <>
              {isLive ? (
                <button class="small" onClick={open} aria-busy={busy === 'open'} data-testid="open-service">
                  Open
                </button>
              ) : null}{' '}
              {s.status !== 'terminated' ? (
                <button class="secondary small" onClick={stop} aria-busy={busy === 'stop'} data-testid="stop-service">
                  Stop
                </button>
              ) : null}
            </>
          }
        >
          <Problem error={actionError} />
          <Facts
            rows={[
              ['status', <span data-testid="service-status"><Badge value={s.status} /></span>],
              ['reason', s.reason ?? '—'],
              ['port', String(s.port)],
              ['command', <span class="mono">{commandText(s.command)}</span>],
              ['restart', `${s.restart} (${s.restarts} restart${s.restarts === 1 ? '' : 's'})`],
              ['runner', s.runner_id ?? '—'],
              ['sandbox', <span class="mono">{s.sandbox_id ?? '—'}</span>],
              ['agent', s.agent_id ?? '—'],
              ['policy', `${s.policy_id} v${s.policy_version}`],
              ['zone', s.zone ?? 'any'],
              ['access', s.public ? 'public: anyone with the URL' : 'private: a key of this tenant, or a token'],
              ['created', time(s.created_at)],
              ['running since', time(s.started_at)],
              ['ended', time(s.stopped_at)],
              ['expires', time(s.expires_at)],
              ['last activity', <span title={time(s.last_activity_at)}>{ago(s.last_activity_at)}</span>],
              ['proxy URL', <span class="mono" data-testid="proxy-url">{s.proxy_url}</span>],
            ]}
          />
          <p class="muted small">
            Open makes a token for this service alone, valid {OPEN_TOKEN_TTL_SECONDS / 60} minutes, and opens the proxy URL with it in a new
            tab; the tab keeps it as a cookie for this service's path. Your key stays here.
          </p>
          <h3>Logs</h3>
          <LiveStream path={`/v1/services/${encodeURIComponent(id)}/logs`} label="logs" onEnd={() => service.reload()} />
        </Section>
      ) : (
        <Loading when={service.loading} />
      )}
    </>
  );
}
