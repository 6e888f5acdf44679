import { rmSync } from 'node:fs';
import net from 'node:net';
import { openInitTunnel } from './init-client.js';

/**
 * A host-side Unix socket that reaches 127.0.0.1:port inside a sandbox. It lives in a folder the sandbox
 * cannot see (so nobody can swap it for a link to a host socket); each connection opens a tunnel through
 * the init's control socket, and bytes are piped both ways until either side closes.
 */
export class PortRelay {
  private readonly connections = new Set<net.Socket>();

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
  ) {}

  static async listen(path: string, controlSocket: string, port: number): Promise<PortRelay> {
    rmSync(path, { force: true });
    const relay: { current?: PortRelay } = {};
    // Half-open allowed: a client that finishes sending still gets the whole answer.
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      relay.current?.connections.add(client);
      client.on('close', () => relay.current?.connections.delete(client));
      client.on('error', () => client.destroy());
      client.pause();
      openInitTunnel(controlSocket, port).then(
        (tunnel) => {
          relay.current?.connections.add(tunnel);
          const closeBoth = () => {
            client.destroy();
            tunnel.destroy();
          };
          tunnel.on('error', closeBoth);
          client.on('error', closeBoth);
          tunnel.on('close', () => {
            relay.current?.connections.delete(tunnel);
            // Never cut bytes still on their way to the client: end it, and close once flushed.
            if (client.writableFinished) client.destroy();
          });
          client.on('finish', () => {
            if (tunnel.readableEnded || tunnel.destroyed) client.destroy();
          });
          client.on('close', () => tunnel.destroy());
          client.pipe(tunnel);
          tunnel.pipe(client);
          client.resume();
          tunnel.resume();
        },
        // Nothing listens inside (yet): the caller sees the connection close, as with a refused port.
        () => client.destroy(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    relay.current = new PortRelay(path, server);
    return relay.current;
  }

  /** Stops listening and cuts every open connection. */
  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}
