import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_RULESET } from '@kiln/core';
import { eventually, KilnSystem, type DbKind } from './support/kiln-system.js';

/** A tenant with its admin key, an agent and the agent's key (raw keys: sessions go through fetch). */
async function keyedTenant(kiln: KilnSystem) {
  const tenant = await kiln.operator.tenants.create({ name: `t-${Math.random().toString(36).slice(2, 8)}` });
  const tenantKey = (await kiln.operator.tenants.createKey(tenant.id)).key;
  const admin = kiln.client(tenantKey);
  const agent = await admin.agents.create({ name: 'agent-1' });
  const agentKey = (await admin.agents.createKey(agent.id)).key;
  return { tenant, tenantKey, admin, agent, agentKey };
}

/** A tiny JSON client over fetch for the session routes (the SDK has no sessions yet). */
function api(url: string, key: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
}

/**
 * Issue 8 with the real processes: a session's life through the API onto a real runner's persistent
 * sandbox, steps in order under concurrent submits, a background server reached from a later step,
 * kill, keepalive, max_active and ttl ceilings, other tenants' and agents' 404, runner loss, and a
 * control-plane crash that ends nothing; the audit verifies after all of it.
 */
describe.each<DbKind>(['sqlite', 'postgres'])('sessions end to end (%s)', (db) => {
  let kiln: KilnSystem;
  afterEach(async () => {
    await kiln?.close();
  }, 60_000);

  it('lives a full life: steps 1..50 with no gap, background server, kill, keepalive, limits, isolation, crash of the server', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    await kiln.startRunner({ name: 'sess', capacity: 2 });
    const { admin, tenant, agent, agentKey } = await keyedTenant(kiln);
    const call = api(kiln.url, agentKey);

    const created = await call('POST', '/v1/sessions', { ttl_seconds: 600, env: { GREETING: 'hi' }, metadata: { purpose: 'e2e' } });
    expect(created.status).toBe(201);
    const session = created.body;
    expect(session).toMatchObject({ status: 'active', agent_id: agent.id, ttl_seconds: 600, metadata: { purpose: 'e2e' }, env: { GREETING: 'hi' } });
    expect(session.runner_id).toMatch(/^run_/);
    expect(session.sandbox_id).toMatch(/^sbx_/);

    const first = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'echo "$GREETING" > note; cat note; echo err >&2' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ sequence: 1, status: 'succeeded', verdict: 'ok', stdout: 'hi\n', stderr: 'err\n', exit_status: { code: 0 } });
    const second = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] });
    expect(second.body).toMatchObject({ sequence: 2, stdout: 'hi\n' });
    const failing = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'exit 3' });
    expect(failing.body).toMatchObject({ sequence: 3, status: 'failed', exit_status: { code: 3 } });
    const withStdin = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'tr a-z A-Z', stdin: 'shout\n' });
    expect(withStdin.body).toMatchObject({ sequence: 4, stdout: 'SHOUT\n' });

    // 50 concurrent submits: 5..54, no gap, no repeat.
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call('POST', `/v1/sessions/${session.id}/steps`, { command: ['echo', String(i)] })),
    );
    expect(many.every((r) => r.status === 201 && r.body.status === 'succeeded')).toBe(true);
    expect(many.map((r) => r.body.sequence).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 5));

    // A background server started by a step keeps running; a later step reaches it.
    const server = await call('POST', `/v1/sessions/${session.id}/steps`, {
      command: 'mkdir -p site && echo served > site/index.html && cd site && exec python3 -m http.server 8765 --bind 127.0.0.1',
      background: true,
    });
    expect(server.body).toMatchObject({ status: 'running', background: true });
    const fetched = await eventually('the background server to answer', async () => {
      const r = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'curl -s http://127.0.0.1:8765/index.html' });
      return r.body.stdout === 'served\n' ? r.body : undefined;
    });
    expect(fetched.status).toBe('succeeded');

    // Kill a running step: it ends canceled, the session lives on; a per-step timeout kills only the step.
    const sleeper = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 60', background: true });
    await call('POST', `/v1/sessions/${session.id}/steps/${sleeper.body.sequence}/kill`, {});
    const killed = await eventually('the killed step to end', async () => {
      const r = await call('GET', `/v1/sessions/${session.id}/steps/${sleeper.body.sequence}`);
      return r.body.status !== 'running' ? r.body : undefined;
    });
    expect(killed.status).toBe('canceled');
    const timedOut = await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'sleep 30', timeout_ms: 300 });
    expect(timedOut.body).toMatchObject({ status: 'failed', verdict: 'time_limit' });
    const alive = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] });
    expect(alive.body.stdout).toBe('hi\n');

    // The transcript, and the SSE of an ended step.
    const transcript = await call('GET', `/v1/sessions/${session.id}/steps?limit=200`);
    const sequences = transcript.body.items.map((s: { sequence: number }) => s.sequence);
    expect(sequences).toEqual(Array.from({ length: sequences.length }, (_, i) => i + 1));
    const sse = await fetch(`${kiln.url}/v1/sessions/${session.id}/steps/1/events`, { headers: { authorization: `Bearer ${agentKey}` } });
    const sseText = await sse.text();
    expect(sseText).toContain('event: end');
    expect(sseText).toContain('hi\\n');

    // Keepalive moves expires_at; past the ceiling is 422 naming the field and ceiling.
    const kept = await call('POST', `/v1/sessions/${session.id}/keepalive`, { ttl_seconds: 900 });
    expect(kept.status).toBe(200);
    expect(Date.parse(kept.body.expires_at)).toBeGreaterThan(Date.parse(session.expires_at));
    const tooLong = await call('POST', `/v1/sessions/${session.id}/keepalive`, { ttl_seconds: 999_999 });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ttl_seconds', ceiling: 3600 });
    const tooLongCreate = await call('POST', '/v1/sessions', { ttl_seconds: 7200 });
    expect(tooLongCreate.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'body.ttl_seconds', ceiling: 3600 });

    // Another tenant's key, and another agent of the same tenant, see 404.
    const otherKey = (await keyedTenant(kiln)).agentKey;
    expect((await api(kiln.url, otherKey)('GET', `/v1/sessions/${session.id}`)).status).toBe(404);
    expect((await api(kiln.url, otherKey)('POST', `/v1/sessions/${session.id}/steps`, { command: 'id' })).status).toBe(404);
    const agent2 = await admin.agents.create({ name: 'agent-2' });
    const agent2Key = (await admin.agents.createKey(agent2.id)).key;
    expect((await api(kiln.url, agent2Key)('GET', `/v1/sessions/${session.id}`)).status).toBe(404);

    // The control plane crashes and comes back: the session still runs steps, its files intact.
    await kiln.killServer();
    await kiln.startServer();
    const afterCrash = await eventually('the session to answer after the restart', async () => {
      const r = await call('POST', `/v1/sessions/${session.id}/steps`, { command: ['cat', 'note'] }).catch(() => undefined);
      return r?.status === 201 ? r.body : undefined;
    });
    expect(afterCrash).toMatchObject({ status: 'succeeded', stdout: 'hi\n' });

    // Delete: terminated (deleted), idempotent; steps then refused.
    const deleted = await call('DELETE', `/v1/sessions/${session.id}`);
    expect(deleted.body).toMatchObject({ status: 'terminated', reason: 'deleted' });
    expect((await call('DELETE', `/v1/sessions/${session.id}`)).body).toMatchObject({ status: 'terminated', reason: 'deleted' });
    expect((await call('POST', `/v1/sessions/${session.id}/steps`, { command: 'id' })).status).toBe(409);
    const sandbox = await eventually('the sandbox to be destroyed', async () => {
      const [s] = (await kiln.operator.sandboxes.list({ session_id: session.id })).items;
      return s?.status === 'terminated' ? s : undefined;
    });
    expect(sandbox.kind).toBe('session');

    const audit = await admin.audit.list({ limit: 200 });
    const actions = new Set(audit.items.map((e: { action: string }) => e.action));
    for (const a of ['session.create', 'session.step', 'session.keepalive', 'session.step_kill', 'session.terminate']) expect(actions).toContain(a);
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 240_000);

  it('max_active is a ceiling; ttl and idle expire; a disabled agent and a lost runner ends its sessions (runner_lost) and fails their sandboxes', async () => {
    kiln = new KilnSystem(db);
    await kiln.startServer();
    const runner = await kiln.startRunner({ name: 'doomed', capacity: 1 });
    const { tenant, tenantKey, admin, agent } = await keyedTenant(kiln);
    const call = api(kiln.url, tenantKey);
    const policy = await call('POST', '/v1/policies', {
      name: 'two-sessions',
      ruleset: { ...DEFAULT_RULESET, sessions: { max_ttl_seconds: 600, idle_timeout_seconds: 600, max_active: 2 } },
    });
    expect(policy.status).toBe(201);
    const a = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    const b = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    expect([a.status, b.status]).toEqual([201, 201]);
    const c = await call('POST', '/v1/sessions', { policy_id: policy.body.id });
    expect(c.status).toBe(422);
    expect(c.body).toMatchObject({ code: 'POLICY_VIOLATION', field: 'sessions.max_active', ceiling: 2 });

    // TTL and idle expiry on short settings; suspension and disable end sessions too.
    const shortLived = await call('POST', '/v1/policies', {
      name: 'short-lived',
      ruleset: { ...DEFAULT_RULESET, sessions: { max_ttl_seconds: 600, idle_timeout_seconds: 2, max_active: 5 } },
    });
    const byTtl = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, ttl_seconds: 1 });
    const byIdle = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, ttl_seconds: 600 });
    const agentOwned = await call('POST', '/v1/sessions', { policy_id: shortLived.body.id, agent_id: agent.id });
    expect([byTtl.status, byIdle.status, agentOwned.status]).toEqual([201, 201, 201]);
    const ended = async (id: string) =>
      eventually(`session ${id} to end`, async () => {
        const r = await call('GET', `/v1/sessions/${id}`);
        return r.body.status !== 'active' ? r.body : undefined;
      }, 30_000);
    expect(await ended(byTtl.body.id)).toMatchObject({ status: 'expired', reason: 'ttl' });
    expect(await ended(byIdle.body.id)).toMatchObject({ status: 'expired', reason: 'idle' });
    expect((await ended(agentOwned.body.id)).reason).toBe('idle');
    for (const id of [byTtl.body.id, byIdle.body.id]) {
      await eventually('the expired session\'s sandbox to be destroyed', async () => {
        const [sbx] = (await kiln.operator.sandboxes.list({ session_id: id })).items;
        return sbx?.status === 'terminated';
      });
    }
    const roomy = await call('POST', '/v1/policies', { name: 'roomy', ruleset: DEFAULT_RULESET });
    const toDisable = await call('POST', '/v1/sessions', { policy_id: roomy.body.id, agent_id: agent.id });
    expect(toDisable.status).toBe(201);
    await admin.agents.disable(agent.id);
    expect((await call('GET', `/v1/sessions/${toDisable.body.id}`)).body).toMatchObject({ status: 'terminated', reason: 'agent_disabled' });

    await runner.kill();
    for (const s of [a.body, b.body]) {
      const ended = await eventually('the session to end with its runner', async () => {
        const r = await call('GET', `/v1/sessions/${s.id}`);
        return r.body.status !== 'active' ? r.body : undefined;
      }, 30_000);
      expect(ended).toMatchObject({ status: 'terminated', reason: 'runner_lost' });
      const [sandbox] = (await kiln.operator.sandboxes.list({ session_id: s.id })).items;
      expect(sandbox!.status).toBe('failed');
    }
    expect((await kiln.operator.audit.verify({ tenant_id: tenant.id })).ok).toBe(true);
  }, 180_000);
});
