import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError } from './api';

/** Loads with `fn` on mount and whenever `deps` change; `reload` runs it again. */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    fn(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, loading: false }),
      (error: unknown) => !ctl.signal.aborted && setState({ error, loading: false }),
    );
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** A refusal or failure, as the API said it: status, stable code, detail, and the field at fault. */
export function Problem({ error }: { error: unknown }) {
  if (!error) return null;
  if (error instanceof ApiError) {
    return (
      <div class="problem" role="alert" data-code={error.code}>
        <strong>
          {error.status} {error.code}
        </strong>
        {error.field ? <span> ({error.field})</span> : null}: {error.detail}
      </div>
    );
  }
  return (
    <div class="problem" role="alert">
      {String(error)}
    </div>
  );
}

export function Loading({ when }: { when: boolean }) {
  return when ? <p aria-busy="true">Loading…</p> : null;
}

export function Badge({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="badge muted">—</span>;
  return <span class={`badge s-${value}`}>{value}</span>;
}

export function Link({ to, children }: { to: string; children: ComponentChildren }) {
  return <a href={`#${to}`}>{children}</a>;
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section>
      <header class="section-head">
        <h2>{title}</h2>
        <div>{actions}</div>
      </header>
      {children}
    </section>
  );
}

export function Empty({ items, what }: { items: unknown[] | undefined; what: string }) {
  return items && items.length === 0 ? <p class="muted">No {what}.</p> : null;
}

/** Key/value pairs of an object, each value as text. */
export function Facts({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="facts">
      {rows.map(([k, v]) => (
        <>
          <dt>{k}</dt>
          <dd>{v ?? '—'}</dd>
        </>
      ))}
    </dl>
  );
}

/**
 * A list filter: "any {label}" (the empty value) first, then each option. Options are values or
 * `{ value, text }` pairs (an agent's id and name); every one is rendered as text.
 */
export function FilterSelect({
  name,
  label,
  value,
  options,
  onChange,
}: {
  name?: string;
  label: string;
  value: string;
  options: readonly (string | { value: string; text: string })[];
  onChange: (e: Event) => void;
}) {
  return (
    <select name={name} aria-label={label} onChange={onChange} value={value}>
      <option value="">any {label}</option>
      {options.map((o) => (typeof o === 'string' ? <option value={o}>{o}</option> : <option value={o.value}>{o.text}</option>))}
    </select>
  );
}
