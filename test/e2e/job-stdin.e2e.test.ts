import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, KilnSystem } from './support/kiln-system.js';

/**
 * A job's live stdin (`stdin_open`, `POST /v1/jobs/{id}/stdin`) through a real server, a real runner
 * and its signed endpoint, into a bubblewrap sandbox's program.
 */
describe('live stdin for a running job (sqlite)', () => {
  const kiln = new KilnSystem('sqlite');
  let key: string;
  let otherKey: string;

  const api = (path: string, init: RequestInit = {}, k = key) =>
    fetch(`${kiln.url}${path}`, { ...init, headers: { authorization: `Bearer ${k}`, ...(init.headers as Record<string, string>) } });
  const submit = async (body: Record<string, unknown>) => {
    const res = await api('/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string };
  };
  const write = (id: string, data: string | Buffer, eof = false, k = key, contentType = 'application/octet-stream') =>
    api(`/v1/jobs/${id}/stdin${eof ? '?eof=true' : ''}`, { method: 'POST', headers: { 'content-type': contentType }, body: data }, k);
  const job = async (id: string) => (await (await api(`/v1/jobs/${id}`)).json()) as Record<string, any>;
  const ended = (id: string) => eventually(`job ${id} ends`, async () => {
    const j = await job(id);
    return ['succeeded', 'failed', 'canceled'].includes(j.status) && j.output_refs !== null ? j : undefined;
  }, 40_000);
  const running = (id: string) => eventually(`job ${id} runs`, async () => (await job(id)).status === 'running');

  beforeAll(async () => {
    await kiln.startServer();
    await kiln.startRunner({ name: 'r1', capacity: 4 });
    const [a, b] = [await kiln.newTenant(), await kiln.newTenant()];
    key = (await a.admin.agents.createKey(a.agent.id)).key;
    otherKey = (await b.admin.agents.createKey(b.agent.id)).key;
  }, 180_000);

  afterAll(async () => {
    await kiln.close();
  }, 60_000);

  it('writes reach the program in order after the stdin it was submitted with; eof ends its input; each write is audited', async () => {
    const { id } = await submit({
      language: 'python',
      code: 'import sys\nfor line in sys.stdin:\n    print("got", line.strip(), flush=True)\nprint("eof")',
      stdin: 'first\n',
      stdin_open: true,
    });
    await running(id);
    const answer = await write(id, 'second\n');
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ written_bytes: 7, eof: false });
    // The SDK's method, the same call.
    expect(await kiln.client(key).jobs.writeStdin(id, 'third\n', { eof: true })).toEqual({ written_bytes: 6, eof: true });
    const done = await ended(id);
    expect(done).toMatchObject({ status: 'succeeded', stdout: 'got first\ngot second\ngot third\neof\n' });
    const audit = await (await api(`/v1/audit-events?action=job.stdin&limit=10`)).json();
    expect(audit.items.filter((e: any) => e.resource_id === id).map((e: any) => e.details)).toEqual(
      expect.arrayContaining([expect.objectContaining({ bytes: 7, eof: false }), expect.objectContaining({ bytes: 6, eof: true })]),
    );
    // Ended: nothing more goes in.
    const late = await write(id, 'x');
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ code: 'INVALID_TRANSITION' });
  }, 60_000);

  it('refuses another tenant (404), a job submitted without stdin_open (409), bad bodies (413, 415)', async () => {
    const closed = await submit({ language: 'python', code: 'import time\nprint("up", flush=True)\ntime.sleep(30)' });
    await running(closed.id);
    const notOpen = await write(closed.id, 'x');
    expect(notOpen.status).toBe(409);
    expect((await notOpen.json()).detail).toMatch(/stdin_open/);
    const open = await submit({ language: 'python', code: 'import sys\nsys.stdin.read()', stdin_open: true });
    await running(open.id);
    const foreign = await write(open.id, 'x', false, otherKey);
    expect(foreign.status).toBe(404);
    expect((await write(open.id, Buffer.alloc(64 * 1024 + 1))).status).toBe(413);
    const json = await write(open.id, '{"data":"x"}', false, key, 'application/json');
    expect(json.status).toBe(415);
    expect((await write(open.id, '', true)).status).toBe(200);
    expect(await ended(open.id)).toMatchObject({ status: 'succeeded' });
    await api(`/v1/jobs/${closed.id}/cancel`, { method: 'POST' });
  }, 60_000);

  it('bounds a flood to a program that does not read (429), and the wall time bounds an idle interactive job', async () => {
    const { id } = await submit({ language: 'python', code: 'import time\nprint("up", flush=True)\ntime.sleep(60)', stdin_open: true, limits: { wall_time_ms: 5000 } });
    await running(id);
    const chunk = Buffer.alloc(64 * 1024, 120);
    // 40 writes at once: the pipe takes a few, the rest wait one at a time; past the queue bound, 429.
    const answers = await Promise.all(Array.from({ length: 40 }, () => write(id, chunk).then((r) => r.status)));
    expect(answers.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(answers.every((s) => s === 200 || s === 429 || s === 409 || s === 503)).toBe(true);
    const done = await ended(id);
    expect(done.verdict).toBe('time_limit');
  }, 90_000);
});
