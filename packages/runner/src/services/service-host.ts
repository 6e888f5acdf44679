import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { KilnError, limitsSchema, networkRulesSchema, type Limits } from '@kiln/core';
import { z } from 'zod';
import { findLanguage } from '../languages/catalog/index.js';
import type { EgressSummary } from '../egress/egress-stats.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import { PersistentSandbox } from '../sandbox/persistent/index.js';
import { json, parseJson } from '../sessions/session-host.js';
import { forwardHttp, forwardUpgrade } from './forward.js';
import { HostedService } from './hosted-service.js';

const idPattern = /^[A-Za-z0-9_-]{1,128}$/;

const startBody = z.strictObject({
  service_id: z.string().regex(idPattern),
  limits: limitsSchema,
  env: z.record(z.string(), z.string()).default({}),
  files: z.array(z.strictObject({ path: z.string().max(1024), content: z.string() })).default([]),
  language: z.string().max(32).nullable().default(null),
  code: z.string().nullable().default(null),
  command: z.union([z.string().min(1), z.array(z.string()).min(1)]),
  port: z.number().int().min(1).max(65_535),
  readiness: z.strictObject({ path: z.string().max(1024).nullable(), timeout_ms: z.number().int().min(1) }),
  restart: z.enum(['never', 'on-failure']),
  max_run_ms: z.number().int().min(1),
  /** The service policy's egress rules; `none` when an older control plane sends none. */
  network: networkRulesSchema.default({ egress: 'none', allow: [] }),
});

/**
 * The runner's half of services (issue 9): `/v1/services…` on the runner's signed endpoint (the
 * SessionHost verifies every request before it gets here). Starts a persistent sandbox per service,
 * reports states to the control plane's polls, streams logs, and forwards proxied traffic to the port.
 */
export class ServiceHost {
  private readonly services = new Map<string, HostedService>();

  constructor(private readonly driver: SandboxDriver) {}

  /** A JSON call (the body was read and checked against its signature). */
  async handle(parts: string[], url: URL, method: string, body: Buffer, res: http.ServerResponse): Promise<void> {
    const id = parts[2];
    if (id !== undefined && !idPattern.test(id)) throw new KilnError('NOT_FOUND', 'no such service');
    if (parts.length === 2 && method === 'GET') return json(res, 200, { services: this.states() });
    if (parts.length === 2 && method === 'POST') return json(res, 201, await this.start(parseJson(startBody, body)));
    if (parts.length === 3 && id && method === 'DELETE') {
      const egress = await this.destroy(id);
      return json(res, 200, { destroyed: true, egress: egress ?? null });
    }
    if (parts.length === 4 && id && parts[3] === 'logs' && method === 'GET') return this.logs(id, res, url.searchParams.get('follow') !== 'false');
    throw new KilnError('NOT_FOUND', 'no such route');
  }

  /** `…/v1/services/{id}/proxy/{rest}`: forwarded to the service's port as `/{rest}`. */
  proxy(id: string, upstreamPath: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    forwardHttp(req, res, this.live(id).relayPath, upstreamPath);
  }

  proxyUpgrade(id: string, upstreamPath: string, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    forwardUpgrade(req, socket, head, this.live(id).relayPath, upstreamPath);
  }

  /** Destroys every service sandbox (the runner is going away). */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.services.keys()].map((id) => this.destroy(id)));
  }

  private live(id: string): HostedService {
    const s = this.services.get(id);
    if (!s || !s.sandbox.alive || s.state === 'ended') throw new KilnError('NOT_FOUND', `service ${id} is not running here`);
    return s;
  }

  private states() {
    return [...this.services.entries()].map(([id, s]) => ({
      service_id: id,
      sandbox_id: s.sandbox.id,
      // A sandbox whose init died is an ended service, whatever its command said last.
      state: s.sandbox.alive ? s.state : 'ended',
      reason: s.sandbox.alive ? s.reason : (s.reason ?? 'crashed'),
      restarts: s.restarts,
      last_exit: s.lastExit,
    }));
  }

  private async start(input: z.infer<typeof startBody>): Promise<{ sandbox_id: string }> {
    const existing = this.services.get(input.service_id);
    // Idempotent: a retried start (its answer was lost) gets the sandbox already made.
    if (existing?.sandbox.alive) return { sandbox_id: existing.sandbox.id };
    const files = input.files.map((f) => ({ path: f.path, content: Buffer.from(f.content, 'base64') as Buffer | string }));
    if (input.code !== null) {
      const language = input.language === null ? undefined : findLanguage(input.language);
      if (!language) throw new KilnError('UNSUPPORTED_LANGUAGE', `this runner does not offer ${JSON.stringify(input.language)}`, { field: 'language' });
      files.unshift({ path: language.sourceFile, content: input.code });
    }
    const handle = await this.driver.start({
      limits: input.limits as Limits,
      // Allowlist services reach their hosts through the runner's egress proxy, as sessions do.
      network: { ...input.network, owner: { service_id: input.service_id } },
      env: input.env,
      files,
    });
    if (!(handle instanceof PersistentSandbox)) {
      await handle.destroy();
      throw new KilnError('INTERNAL', 'the sandbox driver did not start a persistent sandbox');
    }
    try {
      const relayPath = await handle.exposePort(input.port);
      const service = new HostedService(
        handle,
        {
          service_id: input.service_id,
          command: input.command,
          port: input.port,
          env: input.env,
          readiness: input.readiness,
          restart: input.restart,
          max_run_ms: input.max_run_ms,
        },
        relayPath,
      );
      this.services.set(input.service_id, service);
      service.start();
    } catch (err) {
      await handle.destroy();
      throw err;
    }
    return { sandbox_id: handle.id };
  }

  /** Destroys the service's sandbox; answers what it did through the egress proxy (allowlist only). */
  private async destroy(id: string): Promise<EgressSummary | undefined> {
    const s = this.services.get(id);
    if (!s) return undefined;
    this.services.delete(id);
    s.stop();
    s.emit('destroyed');
    await s.sandbox.destroy();
    return s.sandbox.egressSummary;
  }

  /** NDJSON: the kept log, then (following) live chunks, then `{type:"end"}` once the service ends or goes. */
  private logs(id: string, res: http.ServerResponse, follow: boolean): void {
    const s = this.services.get(id);
    if (!s) throw new KilnError('NOT_FOUND', `service ${id} is not here`);
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const line = (value: unknown) => {
      if (!res.destroyed) res.write(`${JSON.stringify(value)}\n`);
    };
    const { chunks, dropped_bytes } = s.history();
    if (dropped_bytes > 0) line({ type: 'dropped', bytes: dropped_bytes });
    for (const c of chunks) line({ type: c.stream, data: c.data.toString('base64') });
    const onLog = (c: { stream: string; data: Buffer }) => line({ type: c.stream, data: c.data.toString('base64') });
    const finish = () => {
      cleanup();
      line({ type: 'end', state: s.state, reason: s.reason });
      res.end();
    };
    const onState = () => {
      if (s.state === 'ended') finish();
    };
    const cleanup = () => {
      s.off('log', onLog);
      s.off('state', onState);
      s.off('destroyed', finish);
    };
    s.on('log', onLog);
    s.on('state', onState);
    s.once('destroyed', finish);
    res.once('close', cleanup);
    if (!follow || s.state === 'ended' || !s.sandbox.alive) finish();
    else res.flushHeaders();
  }
}
