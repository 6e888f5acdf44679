/*
 * kiln-egress-pump: carries one CONNECT tunnel the runner's egress proxy has decided (the policy, its
 * own DNS answer, the address check), so that the tunnel's bytes never pass through JavaScript:
 *
 *   kiln-egress-pump ADDRESS PORT BUDGET_BYTES CONNECT_TIMEOUT_MS IDLE_MS
 *
 * fd 0 is the sandbox's connection (the proxy's end of it, with the CONNECT request read). It connects
 * to ADDRESS (an IP literal: the very address checked, never a name), answers the sandbox `200
 * Connection Established` (or `502` when the host cannot be reached), then moves bytes both ways with
 * splice until both sides end, BUDGET_BYTES (both ways together) are moved, or IDLE_MS pass without a
 * byte. It reports on fd 1, one line each: `connected`, or `failed REASON`, then `progress SENT RECEIVED`
 * every MiB and `done SENT RECEIVED END` (END: closed, idle, byte_cap, error). Static: started once per tunnel, it starts fast.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../egress-relay/egress-relay.h"

static void report(const char *line) {
  size_t len = strlen(line);
  if (write(1, line, len) != (ssize_t)len) {
    /* the proxy is gone: nothing to tell */
  }
}

static long number(const char *text, long min, long max, const char *what) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || !end || *end || v < min || v > max) {
    fprintf(stderr, "kiln-egress-pump: bad %s %s\n", what, text);
    exit(2);
  }
  return v;
}

static void refuse(const char *why) {
  char body[256], msg[512];
  int blen = snprintf(body, sizeof body, "kiln egress: the host could not be reached: %s\n", why);
  int mlen = snprintf(msg, sizeof msg,
                      "HTTP/1.1 502 Bad Gateway\r\nX-Kiln-Egress: unreachable\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                      blen, body);
  if (write(0, msg, (size_t)mlen) < 0) {
    /* the sandbox is gone */
  }
  char line[300];
  snprintf(line, sizeof line, "failed %s\n", why);
  report(line);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: kiln-egress-pump ADDRESS PORT BUDGET_BYTES CONNECT_TIMEOUT_MS IDLE_MS\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  long port = number(argv[2], 1, 65535, "port");
  long long budget = (long long)number(argv[3], 1, 0x7fffffffffffffffL, "budget");
  int connect_ms = (int)number(argv[4], 1, 86400000, "connect timeout");
  int idle_ms = (int)number(argv[5], 1, 86400000, "idle timeout");

  struct sockaddr_storage addr;
  socklen_t addr_len;
  memset(&addr, 0, sizeof addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
  if (inet_pton(AF_INET, argv[1], &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)port), addr_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, argv[1], &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)port), addr_len = sizeof *v6;
  } else {
    fprintf(stderr, "kiln-egress-pump: %s is not an IP address\n", argv[1]);
    return 2;
  }

  int up = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (up < 0) {
    refuse(strerror(errno));
    return 0;
  }
  if (connect(up, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
    refuse(strerror(errno));
    return 0;
  }
  struct pollfd pfd = {.fd = up, .events = POLLOUT};
  int ready = poll(&pfd, 1, connect_ms);
  int err = 0;
  socklen_t err_len = sizeof err;
  if (ready == 0) {
    refuse("connect timed out");
    return 0;
  }
  if (ready < 0 || getsockopt(up, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0 || err != 0) {
    refuse(strerror(err ? err : errno));
    return 0;
  }
  int one = 1;
  setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  report("connected\n");
  static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
  if (write(0, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1)) {
    report("done 0 0 error\n");
    return 0;
  }
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct egress_pump_result result;
  egress_pump(0, up, (unsigned long long)budget, idle_ms, 1, &result);
  char line[128];
  snprintf(line, sizeof line, "done %llu %llu %s\n", result.a_to_b, result.b_to_a, result.end);
  report(line);
  return 0;
}
