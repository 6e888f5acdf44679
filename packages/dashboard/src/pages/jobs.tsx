import { useEffect, useState } from 'preact/hooks';
import { api, download, get, getPages, type Page, type Whoami } from '../api';
import { JobCharts } from '../charts';
import { LiveStream } from '../live-stream';
import { ago, bytes, ms, plainText, time } from '../text';
import { Badge, Empty, Facts, FilterSelect, Link, Loading, Problem, Section, useLoad } from '../ui';

export interface Job {
  id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  language: string;
  version: string;
  status: string;
  verdict: string | null;
  attempt: number;
  zone: string | null;
  requested_at: string;
  started_at: string | null;
  completed_at: string | null;
  exit_status: { code: number | null; signal: string | null } | null;
  resource_usage: Record<string, number | null> | null;
  stdout: string | null;
  stderr: string | null;
  error: { code: string; detail?: string } | null;
  rejected_artifacts?: unknown[];
}

interface Artifact {
  id: string;
  name: string;
  size_bytes: number;
  checksum: string;
  created_at: string;
}
interface Sandbox {
  id: string;
  kind: string;
  runner_id: string;
  status: string;
  created_at: string;
  terminated_at: string | null;
}
interface Language {
  name: string;
  versions: string[];
}

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
// The API's enums (packages/core: jobStatusSchema, VERDICTS); the page does not bundle zod for them.
const VERDICTS = ['ok', 'compile_error', 'runtime_error', 'time_limit', 'memory_limit', 'output_limit', 'file_size_limit', 'canceled', 'system_error'];

function RunJob({ onSubmitted }: { onSubmitted: (job: Job) => void }) {
  const languages = useLoad((s) => get<Language[] | Page<Language>>('/v1/languages', undefined, s), []);
  const list: Language[] = Array.isArray(languages.data) ? languages.data : (languages.data?.items ?? []);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    const wall = Number(data.get('wall_time_ms'));
    setBusy(true);
    setError(undefined);
    try {
      const job = await api<Job>('POST', '/v1/jobs', {
        language: data.get('language'),
        code: data.get('code'),
        ...(data.get('stdin') ? { stdin: data.get('stdin') } : {}),
        ...(wall ? { limits: { wall_time_ms: wall } } : {}),
      });
      onSubmitted(job);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <details class="run-job">
      <summary role="button" class="outline">
        Run a job
      </summary>
      <form onSubmit={submit} aria-label="run a job">
        <div class="grid">
          <label>
            Language
            <select name="language" required>
              {list.map((l) => (
                <option value={l.name}>{l.name}</option>
              ))}
            </select>
          </label>
          <label>
            Wall time limit (ms)
            <input name="wall_time_ms" type="number" min="1" placeholder="policy default" />
          </label>
        </div>
        <label>
          Code
          <textarea name="code" rows={6} required spellcheck={false} class="mono" />
        </label>
        <label>
          stdin
          <textarea name="stdin" rows={2} spellcheck={false} class="mono" />
        </label>
        <button type="submit" aria-busy={busy}>
          Submit
        </button>
        <Problem error={error ?? languages.error} />
      </form>
    </details>
  );
}

export function JobsPage({ me }: { me: Whoami }) {
  const [filters, setFilters] = useState({ status: '', agent_id: '', language: '', verdict: '' });
  const [cursor, setCursor] = useState<string | null>(null);
  const jobs = useLoad((s) => get<Page<Job>>('/v1/jobs', { ...filters, limit: 50, cursor }, s), [JSON.stringify(filters), cursor]);
  const agents = useLoad((s) => (me.kind === 'tenant' ? get<Page<{ id: string; name: string }>>('/v1/agents', { limit: 200 }, s) : Promise.resolve(null)), []);
  // Charts look at the last 1,000 jobs at most: recent history from the API itself, no second store.
  const recent = useLoad((s) => getPages<Job>('/v1/jobs', {}, 5).catch((e) => (s.aborted ? [] : Promise.reject(e))), []);
  const set = (k: keyof typeof filters) => (e: Event) => {
    setCursor(null);
    setFilters({ ...filters, [k]: (e.currentTarget as HTMLSelectElement).value });
  };
  return (
    <>
      <Section title="Jobs" actions={<button class="secondary outline small" onClick={jobs.reload}>Refresh</button>}>
        <RunJob onSubmitted={(job) => (location.hash = `#/jobs/${job.id}`)} />
        <form class="filters grid" aria-label="filter jobs" onSubmit={(e) => e.preventDefault()}>
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
          <input name="language" aria-label="language" placeholder="language" value={filters.language} onChange={set('language')} />
          <FilterSelect name="verdict" label="verdict" onChange={set('verdict')} value={filters.verdict} options={VERDICTS} />
        </form>
        <Problem error={jobs.error} />
        <Loading when={jobs.loading && !jobs.data} />
        <table class="striped" data-testid="jobs-table">
          <thead>
            <tr>
              <th>Job</th>
              <th>Status</th>
              <th>Verdict</th>
              <th>Language</th>
              <th>Agent</th>
              <th>Requested</th>
              <th>Wall time</th>
            </tr>
          </thead>
          <tbody>
            {(jobs.data?.items ?? []).map((j) => (
              <tr>
                <td>
                  <Link to={`/jobs/${j.id}`}>{j.id}</Link>
                </td>
                <td>
                  <Badge value={j.status} />
                </td>
                <td>
                  <Badge value={j.verdict} />
                </td>
                <td>{j.version ? `${j.language} ${j.version}` : j.language}</td>
                <td>{j.agent_id ?? '—'}</td>
                <td title={time(j.requested_at)}>{ago(j.requested_at)}</td>
                <td>{ms(j.resource_usage?.wall_time_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <Empty items={jobs.data?.items} what="jobs" />
        {jobs.data?.next_cursor ? <button class="secondary small" onClick={() => setCursor(jobs.data!.next_cursor)}>Older</button> : null}
        {cursor ? <button class="secondary outline small" onClick={() => setCursor(null)}>Newest</button> : null}
      </Section>
      {recent.data && recent.data.length > 0 ? <JobCharts jobs={recent.data} /> : null}
    </>
  );
}

export function JobDetail({ id }: { id: string }) {
  const job = useLoad((s) => get<Job>(`/v1/jobs/${encodeURIComponent(id)}`, undefined, s), [id]);
  const [ended, setEnded] = useState<Job | null>(null);
  const artifacts = useLoad((s) => get<Page<Artifact>>('/v1/artifacts', { owner_type: 'job', owner_id: id, limit: 200 }, s), [id, ended?.status]);
  const sandboxes = useLoad((s) => get<Page<Sandbox>>('/v1/sandboxes', { job_id: id, limit: 200 }, s), [id, ended?.status]);
  const [actionError, setActionError] = useState<unknown>();
  const j = ended ?? job.data;
  const cancel = async () => {
    setActionError(undefined);
    try {
      setEnded(await api<Job>('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`, {}));
    } catch (err) {
      setActionError(err);
    }
  };
  const save = (a: Artifact) => download(`/v1/artifacts/${encodeURIComponent(a.id)}/content`, a.name).catch(setActionError);
  const usage = j?.resource_usage ?? {};
  return (
    <>
      <p>
        <Link to="/jobs">← Jobs</Link>
      </p>
      <Problem error={job.error} />
      {j ? (
        <Section
          title={`Job ${j.id}`}
          actions={
            j.status === 'queued' || j.status === 'running' ? (
              <button class="secondary small" onClick={cancel}>
                Cancel
              </button>
            ) : null
          }
        >
          <Problem error={actionError} />
          <div class="grid">
            <Facts
              rows={[
                ['status', <Badge value={j.status} />],
                ['verdict', <Badge value={j.verdict} />],
                ['exit', j.exit_status ? `code ${j.exit_status.code ?? '—'}${j.exit_status.signal ? `, signal ${j.exit_status.signal}` : ''}` : '—'],
                ['language', j.version ? `${j.language} ${j.version}` : j.language],
                ['agent', j.agent_id ?? '—'],
                ['policy', `${j.policy_id} v${j.policy_version}`],
                ['attempts', String(j.attempt)],
                ['zone', j.zone ?? 'any'],
                ['requested', time(j.requested_at)],
                ['queue wait', j.started_at ? ms(Date.parse(j.started_at) - Date.parse(j.requested_at)) : '—'],
                ['completed', time(j.completed_at)],
                ['error', j.error ? `${j.error.code}${j.error.detail ? `: ${j.error.detail}` : ''}` : '—'],
              ]}
            />
            <div>
              <h3>Resource usage</h3>
              <Facts
                rows={[
                  ['CPU time', ms(usage.cpu_time_ms)],
                  ['wall time', ms(usage.wall_time_ms)],
                  ['memory peak', bytes(usage.memory_peak_bytes)],
                  ...Object.entries(usage)
                    .filter(([k]) => !['cpu_time_ms', 'wall_time_ms', 'memory_peak_bytes'].includes(k))
                    .map(([k, v]) => [k.replace(/_/g, ' '), v === null ? '—' : k.endsWith('bytes') ? bytes(v) : String(v)] as [string, string]),
                ]}
              />
            </div>
          </div>
          <h3>Output</h3>
          <LiveStream path={`/v1/jobs/${encodeURIComponent(id)}/events`} label="live output" onEnd={(data) => setEnded(data as Job)} />
          {ended && (ended.stdout !== null || ended.stderr !== null) ? (
            <details>
              <summary>Whole stdout and stderr</summary>
              <pre class="output" data-testid="final-stdout">{plainText(ended.stdout ?? '')}</pre>
              <pre class="output stderr" data-testid="final-stderr">{plainText(ended.stderr ?? '')}</pre>
            </details>
          ) : null}
          <h3>Artifacts</h3>
          <Problem error={artifacts.error} />
          <table data-testid="artifacts">
            <tbody>
              {(artifacts.data?.items ?? []).map((a) => (
                <tr>
                  <td>{a.name}</td>
                  <td>{bytes(a.size_bytes)}</td>
                  <td class="mono small">{a.checksum}</td>
                  <td>
                    <button class="small" onClick={() => void save(a)} aria-label={`download ${a.name}`}>
                      Download
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Empty items={artifacts.data?.items} what="artifacts" />
          <h3>Sandbox instances (one per attempt)</h3>
          <Problem error={sandboxes.error} />
          <table data-testid="sandboxes">
            <tbody>
              {(sandboxes.data?.items ?? []).map((s) => (
                <tr>
                  <td class="mono">{s.id}</td>
                  <td>{s.runner_id}</td>
                  <td>
                    <Badge value={s.status} />
                  </td>
                  <td>{time(s.created_at)}</td>
                  <td>{time(s.terminated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Empty items={sandboxes.data?.items} what="sandbox instances" />
        </Section>
      ) : (
        <Loading when={job.loading} />
      )}
    </>
  );
}
