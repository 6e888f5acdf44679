import { useEffect, useState } from 'preact/hooks';
import { streamEvents } from './api';
import { plainText } from './text';
import { Problem } from './ui';

/** The last ~1 MiB of a live stream is kept on screen: the page stays bounded however much a program prints. */
const KEPT_CHARS = 1 << 20;

/**
 * Output as it arrives over server-sent events (`output` {stream, data} chunks, `truncated` notices, then
 * `end`), for a job's events or a service's logs. Always text, terminal escapes removed; the key travels
 * in the header (`streamEvents`), never in the URL.
 */
export function LiveStream({ path, label, onEnd }: { path: string; label: string; onEnd: (data: unknown) => void }) {
  const [out, setOut] = useState<{ stream: string; text: string }[]>([]);
  const [notices, setNotices] = useState<string[]>([]);
  const [state, setState] = useState<'connecting' | 'live' | 'ended' | 'closed' | 'failed'>('connecting');
  const [error, setError] = useState<unknown>();
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    // A reconnect replays what the server still holds: start the screen again.
    setOut([]);
    setError(undefined);
    setState('connecting');
    let chunks: { stream: string; text: string }[] = [];
    let total = 0;
    streamEvents(
      path,
      (event, data) => {
        setState((s) => (s === 'connecting' ? 'live' : s));
        const d = data as { stream?: string; data?: string; detail?: string; reason?: string };
        if (event === 'output' && typeof d.data === 'string') {
          const text = plainText(d.data);
          total += text.length;
          chunks = [...chunks, { stream: d.stream ?? 'stdout', text }];
          while (total > KEPT_CHARS && chunks.length > 1) total -= chunks.shift()!.text.length;
          setOut(chunks);
        } else if (event === 'truncated' || event === 'error') {
          const notice = typeof d.detail === 'string' ? d.detail : typeof d.reason === 'string' ? d.reason : `${label} is incomplete`;
          setNotices((n) => [...n.slice(-9), plainText(notice)]);
        } else if (event === 'end') {
          setState('ended');
          onEnd(data);
        }
      },
      ctl.signal,
    ).then(
      // Closed without an end (a replica restarting, a cut slow watcher): say so, and offer to reconnect.
      () => setState((s) => (s === 'ended' ? s : 'closed')),
      (err: unknown) => {
        if (!ctl.signal.aborted) {
          setError(err);
          setState('failed');
        }
      },
    );
    return () => ctl.abort();
  }, [path, attempt]);
  return (
    <>
      <p class="muted" data-testid="stream-state">
        {label}: {state}
        {state === 'closed' || state === 'failed' ? (
          <>
            {' '}
            <button class="secondary outline small" onClick={() => setAttempt((n) => n + 1)}>
              Reconnect
            </button>
          </>
        ) : null}
      </p>
      {notices.map((n) => (
        <p class="notice">{n}</p>
      ))}
      <pre class="output" data-testid="live-output">
        {out.map((c) => (
          <span class={c.stream === 'stderr' ? 'stderr' : 'stdout'}>{c.text}</span>
        ))}
      </pre>
      <Problem error={error} />
    </>
  );
}
