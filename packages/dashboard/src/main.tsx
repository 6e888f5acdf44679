import '@picocss/pico/css/pico.min.css';
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, session, type Whoami } from './api';
import { Problem } from './ui';
import { AuditPage } from './pages/audit';
import { RunnersPage, SandboxesPage, TenantsPage } from './pages/fleet';
import { JobDetail, JobsPage } from './pages/jobs';
import { PoliciesPage, PolicyDetail } from './pages/policies';
import { ServiceDetail, ServicesPage } from './pages/services';
import { SessionDetail, SessionsPage } from './pages/sessions';
import { WorkflowDetail, WorkflowsPage } from './pages/workflows';

/** Pages route by the URL's hash (`#/jobs/job_…`): the server serves one page, and no key is ever in it. */
function useRoute(): string[] {
  const read = () => (location.hash.replace(/^#\/?/, '') || '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

const TENANT_PAGES = [
  ['jobs', 'Jobs'],
  ['sessions', 'Sessions'],
  ['services', 'Services'],
  ['workflows', 'Workflows'],
  ['policies', 'Policies'],
  ['audit', 'Audit'],
] as const;
const OPERATOR_PAGES = [
  ['tenants', 'Tenants & quotas'],
  ['runners', 'Runners'],
  ['sandboxes', 'Sandboxes'],
  ['audit', 'Audit'],
] as const;

function SignIn({ onSignedIn }: { onSignedIn: (me: Whoami) => void }) {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = (e.currentTarget as HTMLFormElement).elements.namedItem('key') as HTMLInputElement;
    setBusy(true);
    session.signIn(input.value.trim());
    try {
      onSignedIn(await get<Whoami>('/v1/whoami'));
    } catch (err) {
      session.signOut();
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="container signin">
      <article>
        <h1>kiln</h1>
        <p>Sign in with a kiln key: the operator key, a tenant admin key, or an agent key. It is kept in this tab only.</p>
        {/* method=post and no action: the key is never put in the URL, even before the script runs */}
        <form method="post" onSubmit={submit}>
          <input name="key" type="password" autocomplete="off" placeholder="kiln key" aria-label="kiln key" required />
          <button type="submit" aria-busy={busy}>
            Sign in
          </button>
        </form>
        <Problem error={error} />
      </article>
    </main>
  );
}

function App() {
  const [me, setMe] = useState<Whoami | null>(null);
  const [error, setError] = useState<unknown>();
  const [checking, setChecking] = useState(Boolean(session.key()));
  const route = useRoute();

  useEffect(() => {
    if (!session.key()) return;
    get<Whoami>('/v1/whoami').then(setMe, (err: unknown) => {
      if (err instanceof ApiError && err.status === 401) session.signOut();
      setError(err);
    }).finally(() => setChecking(false));
  }, []);

  if (checking) return <p aria-busy="true">Signing in…</p>;
  if (!me) return <SignIn onSignedIn={(m) => { setError(undefined); setMe(m); }} />;

  const pages = me.kind === 'operator' ? OPERATOR_PAGES : TENANT_PAGES;
  const [page = pages[0][0], id, sub] = route;
  const signOut = () => {
    session.signOut();
    setMe(null);
    location.hash = '';
  };
  const role = me.kind === 'operator' ? 'operator' : me.kind === 'tenant' ? 'tenant admin' : 'agent';
  return (
    <>
      <nav class="container-fluid topbar">
        <ul>
          <li>
            <strong>kiln</strong>
          </li>
          {pages.map(([p, label]) => (
            <li>
              <a href={`#/${p}`} aria-current={page === p ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
        <ul>
          <li class="muted" data-testid="whoami">
            {role}
            {me.tenant_id ? ` · ${me.tenant_id}` : ''}
            {me.agent_id ? ` · ${me.agent_id}` : ''}
            {me.tenant_status === 'suspended' ? ' · suspended (read only)' : ''}
          </li>
          <li>
            <button class="secondary outline small" onClick={signOut}>
              Sign out
            </button>
          </li>
        </ul>
      </nav>
      <main class="container-fluid">
        <Problem error={error} />
        <Page me={me} page={page} id={id} sub={sub} />
      </main>
    </>
  );
}

function Page({ me, page, id, sub }: { me: Whoami; page: string; id: string | undefined; sub: string | undefined }) {
  switch (page) {
    case 'jobs':
      return id ? <JobDetail id={id} /> : <JobsPage me={me} />;
    case 'sessions':
      return id ? <SessionDetail id={id} /> : <SessionsPage />;
    case 'services':
      return id ? <ServiceDetail id={id} /> : <ServicesPage me={me} />;
    case 'workflows':
      return id ? <WorkflowDetail id={id} /> : <WorkflowsPage />;
    case 'policies':
      return id ? <PolicyDetail id={id} /> : <PoliciesPage />;
    case 'audit':
      return <AuditPage me={me} />;
    case 'tenants':
      return <TenantsPage selected={id} />;
    case 'runners':
      return <RunnersPage />;
    case 'sandboxes':
      return <SandboxesPage runnerId={id === 'runner' ? sub : undefined} />;
    default:
      return <p>No such page.</p>;
  }
}

render(<App />, document.getElementById('app')!);
