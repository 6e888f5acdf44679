import { planeSigningKey, signPlaneRequest, SIGNATURE_HEADERS } from '@kiln/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BubblewrapDriver } from '../sandbox/bubblewrap-driver.js';
import { SessionHost } from './session-host.js';

// The refusals happen before any sandbox is touched; the driver is the real one, never started here.
const credentialA = `kiln_runner_run_${'a'.repeat(26)}_${'1'.repeat(64)}`;
const credentialB = `kiln_runner_run_${'b'.repeat(26)}_${'2'.repeat(64)}`;

describe('session host: only the control plane, signed, fresh, once', () => {
  let host: SessionHost;
  let url: string;
  beforeAll(async () => {
    host = new SessionHost({ driver: new BubblewrapDriver(), signingKey: () => planeSigningKey(credentialA) });
    url = await host.start();
  });
  afterAll(async () => {
    await host.stop();
  });

  const send = (path: string, headers: Record<string, string>, method = 'GET', body?: string) =>
    fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });

  it('answers a request signed with its own key', async () => {
    const res = await send('/v1/sessions', signPlaneRequest(planeSigningKey(credentialA), { method: 'GET', pathWithQuery: '/v1/sessions' }, Date.now()));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ session_ids: [] });
  });

  it('refuses an unsigned and a forged request', async () => {
    expect((await send('/v1/sessions', {})).status).toBe(401);
    const headers = signPlaneRequest(planeSigningKey(credentialA), { method: 'GET', pathWithQuery: '/v1/sessions' }, Date.now());
    headers[SIGNATURE_HEADERS.signature] = 'f'.repeat(64);
    const forged = await send('/v1/sessions', headers);
    expect(forged.status).toBe(401);
    expect((await forged.json()).detail).toContain('bad signature');
    // A valid signature of another path does not open this one.
    const other = signPlaneRequest(planeSigningKey(credentialA), { method: 'GET', pathWithQuery: '/v1/sessions/x' }, Date.now());
    expect((await send('/v1/sessions', other)).status).toBe(401);
  });

  it('refuses a replayed request and a stale one', async () => {
    const headers = signPlaneRequest(planeSigningKey(credentialA), { method: 'GET', pathWithQuery: '/v1/sessions' }, Date.now());
    expect((await send('/v1/sessions', headers)).status).toBe(200);
    const replay = await send('/v1/sessions', headers);
    expect(replay.status).toBe(401);
    expect((await replay.json()).detail).toContain('replayed');
    const stale = signPlaneRequest(planeSigningKey(credentialA), { method: 'GET', pathWithQuery: '/v1/sessions' }, Date.now() - 120_000);
    const res = await send('/v1/sessions', stale);
    expect(res.status).toBe(401);
    expect((await res.json()).detail).toContain('stale');
  });

  it("refuses another runner's key, and a body other than the one signed", async () => {
    const foreign = signPlaneRequest(planeSigningKey(credentialB), { method: 'DELETE', pathWithQuery: '/v1/sessions/ses_x' }, Date.now());
    expect((await send('/v1/sessions/ses_x', foreign, 'DELETE')).status).toBe(401);
    const signed = signPlaneRequest(
      planeSigningKey(credentialA),
      { method: 'POST', pathWithQuery: '/v1/sessions/ses_x/steps', body: '{"sequence":1,"command":"true"}' },
      Date.now(),
    );
    const swapped = await send('/v1/sessions/ses_x/steps', signed, 'POST', '{"sequence":1,"command":"rm -rf /workspace"}');
    expect(swapped.status).toBe(401);
    expect((await swapped.json()).detail).toContain('not the one signed');
  });
});
