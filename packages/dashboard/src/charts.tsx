import type { Job } from './pages/jobs';
import { ms } from './text';

// Charts are SVG drawn by Preact: every label is a text node, so nothing a tenant wrote becomes markup.

const W = 560;
const H = 160;
const PAD = 28;

const VERDICT_COLORS: Record<string, string> = {
  ok: '#2e7d32',
  runtime_error: '#c62828',
  compile_error: '#ad1457',
  time_limit: '#ef6c00',
  memory_limit: '#6a1b9a',
  output_limit: '#4527a0',
  file_size_limit: '#283593',
  canceled: '#757575',
  system_error: '#000000',
  pending: '#90caf9',
};

interface Bucket {
  start: number;
  counts: Record<string, number>;
  total: number;
}

/** Jobs per time bucket, split by verdict (unfinished jobs as "pending"); buckets sized to the span. */
function bucketize(jobs: Job[], buckets = 24): { buckets: Bucket[]; width: number } {
  const times = jobs.map((j) => Date.parse(j.requested_at));
  const end = Math.max(...times, Date.now());
  const start = Math.min(...times);
  const width = Math.max(60_000, Math.ceil((end - start + 1) / buckets / 60_000) * 60_000);
  const first = end - width * buckets;
  const out: Bucket[] = Array.from({ length: buckets }, (_, i) => ({ start: first + i * width, counts: {}, total: 0 }));
  for (const j of jobs) {
    const i = Math.min(buckets - 1, Math.floor((Date.parse(j.requested_at) - first) / width));
    const b = out[i];
    if (!b) continue;
    const key = j.verdict ?? 'pending';
    b.counts[key] = (b.counts[key] ?? 0) + 1;
    b.total++;
  }
  return { buckets: out, width };
}

function JobRate({ jobs }: { jobs: Job[] }) {
  const { buckets, width } = bucketize(jobs);
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const bw = (W - PAD) / buckets.length;
  const used = [...new Set(jobs.map((j) => j.verdict ?? 'pending'))];
  return (
    <figure>
      <figcaption>
        Jobs per {Math.round(width / 60_000)} min, by verdict (last {jobs.length} jobs)
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H + 20}`} role="img" aria-label="job rate and verdicts over time" data-testid="chart-rate">
        <text x={0} y={12} class="axis">
          {max}
        </text>
        <line x1={PAD} y1={H} x2={W} y2={H} class="axis-line" />
        {buckets.map((b, i) => {
          let y = H;
          return Object.entries(b.counts).map(([verdict, n]) => {
            const h = (n / max) * (H - 16);
            y -= h;
            return (
              <rect x={PAD + i * bw + 1} y={y} width={bw - 2} height={h} fill={VERDICT_COLORS[verdict] ?? '#999'}>
                <title>{`${new Date(b.start).toLocaleTimeString()}: ${n} ${verdict}`}</title>
              </rect>
            );
          });
        })}
        <text x={PAD} y={H + 16} class="axis">
          {new Date(buckets[0]!.start).toLocaleTimeString()}
        </text>
        <text x={W} y={H + 16} class="axis" text-anchor="end">
          now
        </text>
      </svg>
      <p class="legend">
        {used.map((v) => (
          <span>
            <i style={{ background: VERDICT_COLORS[v] ?? '#999' }} /> {v}
          </span>
        ))}
      </p>
    </figure>
  );
}

/** Queue wait (started_at − requested_at) of started jobs, as a histogram over log-spaced bins. */
function QueueWait({ jobs }: { jobs: Job[] }) {
  const waits = jobs.filter((j) => j.started_at).map((j) => Math.max(0, Date.parse(j.started_at!) - Date.parse(j.requested_at)));
  const edges = [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, Infinity];
  const counts = edges.map(() => 0);
  for (const w of waits) counts[edges.findIndex((e) => w < e)]!++;
  const max = Math.max(1, ...counts);
  const bw = (W - PAD) / edges.length;
  const sorted = [...waits].sort((a, b) => a - b);
  const p = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : null);
  return (
    <figure>
      <figcaption>
        Queue wait of {waits.length} started jobs: median {ms(p(0.5))}, p95 {ms(p(0.95))}
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H + 20}`} role="img" aria-label="queue wait histogram" data-testid="chart-queue-wait">
        <line x1={PAD} y1={H} x2={W} y2={H} class="axis-line" />
        {counts.map((n, i) => {
          const h = (n / max) * (H - 16);
          return (
            <>
              <rect x={PAD + i * bw + 2} y={H - h} width={bw - 4} height={h} fill="#1565c0">
                <title>{`${n} jobs`}</title>
              </rect>
              <text x={PAD + i * bw + bw / 2} y={H + 16} class="axis" text-anchor="middle">
                {edges[i] === Infinity ? '≥60s' : `<${ms(edges[i])}`}
              </text>
            </>
          );
        })}
      </svg>
    </figure>
  );
}

export function JobCharts({ jobs }: { jobs: Job[] }) {
  return (
    <section class="grid charts">
      <JobRate jobs={jobs} />
      <QueueWait jobs={jobs} />
    </section>
  );
}
