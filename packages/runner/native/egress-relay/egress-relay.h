/*
 * The sandbox side of egress (ARCHITECTURE.md §8): a relay that listens on 127.0.0.1:PORT inside the
 * sandbox's own network namespace (which has only `lo`) and forwards every connection, byte for byte,
 * to the runner's egress proxy through a Unix socket bound into the sandbox. Linked into kiln-exec
 * (one-shot sandboxes) and kiln-init (persistent ones); started only for `egress: "allowlist"`.
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

#endif
