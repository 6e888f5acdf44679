import dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import * as dnsPacket from 'dns-packet';

/**
 * A resolver the test controls: a UDP DNS server on 127.0.0.1 answering A and AAAA from a table the
 * test sets (anything else: NXDOMAIN), so the egress proxy (KILN_EGRESS_RESOLVER) resolves test names
 * without any outside network.
 */
export interface TestDns {
  /** `127.0.0.1:PORT`, for KILN_EGRESS_RESOLVER. */
  server: string;
  /** Sets a name's addresses (IPv4 and IPv6 literals mixed). */
  set(name: string, addresses: readonly string[]): void;
  /** Questions asked for a name so far. */
  queries(name: string): number;
  stop(): Promise<void>;
}

export async function startTestDns(records: Record<string, readonly string[]> = {}): Promise<TestDns> {
  const table = new Map<string, readonly string[]>(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]));
  const asked = new Map<string, number>();
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    asked.set(name, (asked.get(name) ?? 0) + 1);
    const addresses = table.get(name);
    const answers: dnsPacket.Answer[] = (addresses ?? [])
      .filter((a) => (question.type === 'A' ? isIPv4(a) : question.type === 'AAAA' ? !isIPv4(a) : false))
      .map((data) => ({ type: question.type as 'A' | 'AAAA', name: question.name, ttl: 0, class: 'IN', data }));
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (addresses ? 0 : 3),
      questions: [question],
      answers,
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  return {
    server: `127.0.0.1:${port}`,
    set: (name, addresses) => table.set(name.toLowerCase(), addresses),
    queries: (name) => asked.get(name.toLowerCase()) ?? 0,
    stop: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
