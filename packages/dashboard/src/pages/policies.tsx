import { diffLines } from 'diff';
import { useState } from 'preact/hooks';
import { get, type Page } from '../api';
import { time } from '../text';
import { Empty, Link, Loading, Problem, Section, useLoad } from '../ui';

interface Policy {
  id: string;
  name: string;
  version: number;
  created_at?: string;
}
interface PolicyVersion {
  policy_id: string;
  version: number;
  ruleset: unknown;
  created_at: string;
  created_by: string;
}

export function PoliciesPage() {
  const list = useLoad((s) => get<Page<Policy>>('/v1/policies', { limit: 200 }, s), []);
  return (
    <Section title="Policies">
      <Problem error={list.error} />
      <Loading when={list.loading && !list.data} />
      <table class="striped">
        <thead>
          <tr>
            <th>Name</th>
            <th>Current version</th>
            <th>Id</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((p) => (
            <tr>
              <td>
                <Link to={`/policies/${p.id}`}>{p.name}</Link>
              </td>
              <td>{p.version}</td>
              <td class="mono">{p.id}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Empty items={list.data?.items} what="policies" />
    </Section>
  );
}

const pretty = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

/** Two versions side by side, and a line diff of their rulesets (added and removed lines marked). */
export function PolicyDetail({ id }: { id: string }) {
  const versions = useLoad((s) => get<Page<PolicyVersion>>(`/v1/policies/${encodeURIComponent(id)}/versions`, { limit: 200 }, s), [id]);
  const items = [...(versions.data?.items ?? [])].sort((a, b) => a.version - b.version);
  const [left, setLeft] = useState<number | null>(null);
  const [right, setRight] = useState<number | null>(null);
  const r = items.find((v) => v.version === right) ?? items[items.length - 1];
  const l = items.find((v) => v.version === left) ?? items[items.length - 2] ?? r;
  const pick = (set: (n: number) => void, value: number | undefined) => (
    <select aria-label="version" value={value} onChange={(e) => set(Number(e.currentTarget.value))}>
      {items.map((v) => (
        <option value={v.version}>version {v.version}</option>
      ))}
    </select>
  );
  return (
    <>
      <p>
        <Link to="/policies">← Policies</Link>
      </p>
      <Problem error={versions.error} />
      <Loading when={versions.loading && !versions.data} />
      {l && r ? (
        <Section title={`Policy ${id}`}>
          <div class="grid">
            <div>
              {pick(setLeft, l.version)}
              <p class="muted">
                by {l.created_by}, {time(l.created_at)}
              </p>
              <pre class="output" data-testid="policy-left">{pretty(l.ruleset)}</pre>
            </div>
            <div>
              {pick(setRight, r.version)}
              <p class="muted">
                by {r.created_by}, {time(r.created_at)}
              </p>
              <pre class="output" data-testid="policy-right">{pretty(r.ruleset)}</pre>
            </div>
          </div>
          <h3>
            Diff: version {l.version} → {r.version}
          </h3>
          <pre class="output diff" data-testid="policy-diff">
            {diffLines(pretty(l.ruleset), pretty(r.ruleset)).map((part) => (
              <span class={part.added ? 'added' : part.removed ? 'removed' : 'same'}>
                {part.value
                  .replace(/\n$/, '')
                  .split('\n')
                  .map((line) => `${part.added ? '+ ' : part.removed ? '- ' : '  '}${line}\n`)
                  .join('')}
              </span>
            ))}
          </pre>
        </Section>
      ) : null}
    </>
  );
}
