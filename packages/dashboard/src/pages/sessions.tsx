import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, get, session as auth, type Page } from '../api';
import { ago, ms, plainText, time } from '../text';
import { Badge, Empty, Facts, FilterSelect, Link, Loading, Problem, Section, useLoad } from '../ui';

interface Session {
  id: string;
  agent_id: string | null;
  policy_id: string;
  policy_version: number;
  status: string;
  reason: string | null;
  zone: string | null;
  runner_id: string | null;
  sandbox_id: string | null;
  created_at: string;
  expires_at: string;
  last_activity_at: string;
  ended_at: string | null;
  last_step_sequence: number;
}
interface Step {
  sequence: number;
  command: string | string[];
  status: string;
  background: boolean;
  started_at: string | null;
  completed_at: string | null;
  exit_status: { code: number | null; signal: string | null } | null;
  resource_usage: { wall_time_ms?: number } | null;
  verdict: string | null;
  stdout: string | null;
  stderr: string | null;
}

export function SessionsPage() {
  const [status, setStatus] = useState('');
  const list = useLoad((s) => get<Page<Session>>('/v1/sessions', { status, limit: 100 }, s), [status]);
  return (
    <Section title="Sessions" actions={<button class="secondary outline small" onClick={list.reload}>Refresh</button>}>
      <FilterSelect label="status" value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value)} options={['active', 'expired', 'terminated']} />
      <Problem error={list.error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped">
        <thead>
          <tr>
            <th>Session</th>
            <th>Status</th>
            <th>Agent</th>
            <th>Steps</th>
            <th>Last activity</th>
            <th>Expires</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((s) => (
            <tr>
              <td>
                <Link to={`/sessions/${s.id}`}>{s.id}</Link>
              </td>
              <td>
                <Badge value={s.status} /> {s.reason ?? ''}
              </td>
              <td>{s.agent_id ?? '—'}</td>
              <td>{s.last_step_sequence}</td>
              <td>{ago(s.last_activity_at)}</td>
              <td>{time(s.expires_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="sessions" />
    </Section>
  );
}

/**
 * A shell in the session's sandbox over `GET /v1/sessions/{id}/pty` (a WebSocket). Browsers cannot set
 * headers on a WebSocket, so the key goes as the `kiln.key.<key>` subprotocol beside `kiln.pty`, never in
 * the URL. xterm.js draws what the program prints: escapes are terminal commands there, not markup.
 */
function SessionTerminal({ id, onExit }: { id: string; onExit: () => void }) {
  const el = useRef<HTMLDivElement>(null);
  const [state, setState] = useState('connecting');
  useEffect(() => {
    const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, scrollback: 2000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el.current!);
    fit.fit();
    term.focus();
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${proto}//${location.host}/v1/sessions/${encodeURIComponent(id)}/pty?cols=${term.cols}&rows=${term.rows}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, ['kiln.pty', `kiln.key.${auth.key() ?? ''}`]);
    } catch {
      setState('this key cannot be sent as a WebSocket subprotocol');
      return () => term.dispose();
    }
    ws.binaryType = 'arraybuffer';
    const enc = new TextEncoder();
    ws.onopen = () => setState('connected');
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') {
        const msg = JSON.parse(m.data) as { type?: string; code?: number | null };
        if (msg.type === 'exit') {
          setState(`shell exited (code ${msg.code ?? '—'})`);
          onExit();
        }
      } else term.write(new Uint8Array(m.data as ArrayBuffer));
    };
    ws.onclose = (e) => setState((s) => (s.startsWith('shell exited') ? s : `closed (${e.code})`));
    const input = term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(enc.encode(d)));
    const resize = term.onResize(({ cols, rows }) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: 'resize', cols, rows })));
    const onWindow = () => fit.fit();
    addEventListener('resize', onWindow);
    return () => {
      removeEventListener('resize', onWindow);
      input.dispose();
      resize.dispose();
      ws.close();
      term.dispose();
    };
  }, [id]);
  return (
    <>
      <p class="muted" data-testid="terminal-state">
        terminal: {state}
      </p>
      <div class="terminal" ref={el} data-testid="terminal" />
    </>
  );
}

export function SessionDetail({ id }: { id: string }) {
  const s = useLoad((sig) => get<Session>(`/v1/sessions/${encodeURIComponent(id)}`, undefined, sig), [id]);
  const steps = useLoad((sig) => get<Page<Step>>(`/v1/sessions/${encodeURIComponent(id)}/steps`, { limit: 200 }, sig), [id]);
  const [terminal, setTerminal] = useState(false);
  const [error, setError] = useState<unknown>();
  const end = async () => {
    setError(undefined);
    try {
      await api('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
      s.reload();
    } catch (err) {
      setError(err);
    }
  };
  const v = s.data;
  return (
    <>
      <p>
        <Link to="/sessions">← Sessions</Link>
      </p>
      <Problem error={s.error} />
      {v ? (
        <Section
          title={`Session ${v.id}`}
          actions={
            v.status === 'active' ? (
              <>
                <button class="secondary outline small" onClick={() => { s.reload(); steps.reload(); }}>
                  Refresh
                </button>{' '}
                <button class="small" onClick={() => setTerminal(!terminal)}>
                  {terminal ? 'Close terminal' : 'Open terminal'}
                </button>{' '}
                <button class="secondary small" onClick={end}>
                  End session
                </button>
              </>
            ) : null
          }
        >
          <Problem error={error} />
          <Facts
            rows={[
              ['status', <>{<Badge value={v.status} />} {v.reason ?? ''}</>],
              ['agent', v.agent_id ?? '—'],
              ['policy', `${v.policy_id} v${v.policy_version}`],
              ['runner', v.runner_id ?? '—'],
              ['sandbox', v.sandbox_id ?? '—'],
              ['created', time(v.created_at)],
              ['last activity', time(v.last_activity_at)],
              ['expires', time(v.expires_at)],
            ]}
          />
          {terminal ? <SessionTerminal id={id} onExit={steps.reload} /> : null}
          <h3>Steps</h3>
          <Problem error={steps.error} />
          {(steps.data?.items ?? []).map((st) => (
            <details>
              <summary>
                #{st.sequence} <code>{Array.isArray(st.command) ? st.command.join(' ') : st.command}</code> <Badge value={st.status} />{' '}
                {st.background ? '(background)' : ''} {ms(st.resource_usage?.wall_time_ms)}
              </summary>
              <pre class="output">{plainText(st.stdout ?? '')}</pre>
              {st.stderr ? <pre class="output stderr">{plainText(st.stderr)}</pre> : null}
            </details>
          ))}
          <Empty items={steps.data?.items} what="steps" />
        </Section>
      ) : (
        <Loading when={s.loading} />
      )}
    </>
  );
}
