/*
 * The byte-moving half of egress (ARCHITECTURE.md §8), in two programs that share this engine:
 *
 * - the relay, inside a sandbox with allowlist egress: listens on 127.0.0.1:PORT in the sandbox's own
 *   network namespace (which has only `lo`) and forwards every connection to the runner's egress proxy
 *   through the Unix socket bound into the sandbox. Linked into kiln-exec (one-shot sandboxes) and
 *   kiln-init (persistent ones), started only for `egress: "allowlist"`.
 * - kiln-egress-pump, on the runner: once the proxy has decided a CONNECT tunnel (policy, DNS, address
 *   check), it connects to the checked address and moves the tunnel's bytes, so they never pass
 *   through the proxy's JavaScript.
 *
 * Bytes move with splice(2) through a pipe per direction: the kernel passes pages between the sockets
 * instead of copying them through user space.
 */
#ifndef KILN_EGRESS_RELAY_H
#define KILN_EGRESS_RELAY_H

/* Binds and listens on 127.0.0.1:port; returns the socket, or -1 with a message on stderr. */
int egress_relay_listen(const char *port);

/*
 * Starts the relay in a process of its own, detached from the caller (a double fork, so the payload
 * never sees it as a child and PID 1 reaps it). The listening socket is made before, so connections
 * made right after the call wait in its backlog. Returns 0, or -1 with a message on stderr.
 */
int egress_relay_spawn(const char *port, const char *proxy_socket);

/* What one pumped connection did. */
struct egress_pump_result {
  unsigned long long a_to_b, b_to_a;
  /* "closed", "idle" (no byte either way for idle_ms), "byte_cap", "error" */
  const char *end;
};

/*
 * Moves bytes between two connected, non-blocking sockets until both directions ended, the budget
 * (bytes both ways together; 0 = none) is spent, or idle_ms pass without a byte (0 = never). With
 * progress_fd >= 0 it writes `progress A_TO_B B_TO_A` lines there every PROGRESS_BYTES moved, so the
 * proxy keeps a sandbox's byte cap across its concurrent tunnels.
 */
#define EGRESS_PROGRESS_BYTES (1024 * 1024)
void egress_pump(int a, int b, unsigned long long budget, int idle_ms, int progress_fd, struct egress_pump_result *out);

#endif
