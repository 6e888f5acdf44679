// A test "internet" host, run inside a network namespace by test-hosts.ts (ip netns exec): plain HTTP
// on :80, HTTPS on :443 with a certificate of the test CA, a WebSocket echo server on :8080. It prints
// "ready" once all three listen, and counts the connections it accepted (GET /connections).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { WebSocketServer } from 'ws';

const [certDir] = process.argv.slice(2);
let connections = 0;

function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/connections') return res.end(String(connections));
  if (url.pathname === '/bytes') {
    // A large body for the throughput benchmark, written in 64 KiB chunks.
    let left = Math.min(Number(url.searchParams.get('n') ?? 0), 2 ** 34);
    const chunk = Buffer.alloc(64 * 1024, 120);
    res.writeHead(200, { 'content-length': String(left) });
    const pump = () => {
      while (left > 0) {
        const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= part.length;
        if (!res.write(part)) return res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  let body = 0;
  req.on('data', (c) => (body += c.length));
  req.on('end', () => res.end(`hello from the test host: ${req.method} ${url.pathname} host=${req.headers.host} body=${body}\n`));
}

const plain = http.createServer(handler);
const secure = https.createServer({ key: readFileSync(`${certDir}/host.key`), cert: readFileSync(`${certDir}/host.pem`) }, handler);
for (const s of [plain, secure]) s.on('connection', () => (connections += 1));
const ws = new WebSocketServer({ port: 8080 });
ws.on('connection', (socket) => {
  connections += 1;
  socket.on('message', (data) => socket.send(`echo: ${data}`));
});
await Promise.all([
  new Promise((r) => plain.listen(80, '0.0.0.0', r)),
  new Promise((r) => secure.listen(443, '0.0.0.0', r)),
  new Promise((r) => ws.on('listening', r)),
]);
process.stdout.write('ready\n');
