/* See egress-relay.h. One poll loop over a bounded table of connection pairs, a pipe each way. */
#define _GNU_SOURCE
#include "egress-relay.h"

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
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The runner's proxy caps connections per sandbox far below this; the table only bounds the relay. */
#define MAX_PAIRS 128
/* What one direction holds in flight (the pipe's size; the default 64 KiB costs throughput). */
#define PIPE_BYTES (256 * 1024)

struct half {
  int from, to;
  int pipe_r, pipe_w;
  size_t in_pipe;
  int eof; /* 1: `from` said EOF; 2: `to` was shut down for writing after the pipe drained */
  unsigned long long moved;
};

struct pair {
  int used;
  struct half ab, ba;
};

static struct pair pairs[MAX_PAIRS];

static int pair_open(struct pair *pr, int a, int b) {
  int p1[2], p2[2];
  if (pipe2(p1, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
  if (pipe2(p2, O_NONBLOCK | O_CLOEXEC) < 0) {
    close(p1[0]), close(p1[1]);
    return -1;
  }
  fcntl(p1[1], F_SETPIPE_SZ, PIPE_BYTES);
  fcntl(p2[1], F_SETPIPE_SZ, PIPE_BYTES);
  pr->used = 1;
  pr->ab = (struct half){.from = a, .to = b, .pipe_r = p1[0], .pipe_w = p1[1]};
  pr->ba = (struct half){.from = b, .to = a, .pipe_r = p2[0], .pipe_w = p2[1]};
  return 0;
}

static void pair_close(struct pair *pr) {
  close(pr->ab.from), close(pr->ab.to);
  close(pr->ab.pipe_r), close(pr->ab.pipe_w), close(pr->ba.pipe_r), close(pr->ba.pipe_w);
  memset(pr, 0, sizeof *pr);
}

/* Moves what it can one way; `cap` bounds what may still be read (budget). -1: the pair is broken. */
static int pump_half(struct half *h, unsigned long long cap) {
  if (!h->eof && h->in_pipe < PIPE_BYTES && cap > 0) {
    size_t want = PIPE_BYTES - h->in_pipe;
    if (want > cap) want = (size_t)cap;
    ssize_t n = splice(h->from, NULL, h->pipe_w, NULL, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (n > 0) h->in_pipe += (size_t)n, h->moved += (unsigned long long)n;
    else if (n == 0) h->eof = 1;
    else if (errno != EAGAIN && errno != EINTR) h->eof = 1;
  }
  while (h->in_pipe > 0) {
    ssize_t n = splice(h->pipe_r, NULL, h->to, NULL, h->in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (n > 0) h->in_pipe -= (size_t)n;
    else if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    else return -1;
  }
  if (h->eof == 1 && h->in_pipe == 0) {
    shutdown(h->to, SHUT_WR);
    h->eof = 2;
  }
  return 0;
}

static void set_events(const struct pair *pr, struct pollfd *pa, struct pollfd *pb) {
  pa->fd = pr->ab.from, pb->fd = pr->ab.to;
  pa->events = pb->events = 0;
  if (!pr->ab.eof && pr->ab.in_pipe < PIPE_BYTES) pa->events |= POLLIN;
  if (pr->ab.in_pipe > 0) pb->events |= POLLOUT;
  if (!pr->ba.eof && pr->ba.in_pipe < PIPE_BYTES) pb->events |= POLLIN;
  if (pr->ba.in_pipe > 0) pa->events |= POLLOUT;
  /* poll() reports a hung-up socket whatever it is asked: one with nothing to do is left out. */
  if (pa->events == 0) pa->fd = -1;
  if (pb->events == 0) pb->fd = -1;
}

static int pair_done(const struct pair *pr) { return pr->ab.eof == 2 && pr->ba.eof == 2; }

void egress_pump(int a, int b, unsigned long long budget, int idle_ms, int progress_fd, struct egress_pump_result *out) {
  struct pair pr;
  unsigned long long reported = 0;
  memset(out, 0, sizeof *out);
  if (pair_open(&pr, a, b) < 0) {
    out->end = "error";
    return;
  }
  out->end = "closed";
  for (;;) {
    struct pollfd pfd[2];
    set_events(&pr, &pfd[0], &pfd[1]);
    int n = poll(pfd, 2, idle_ms > 0 ? idle_ms : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      out->end = "idle";
      break;
    }
    unsigned long long used = pr.ab.moved + pr.ba.moved;
    unsigned long long left = budget == 0 ? ~0ULL : (used >= budget ? 0 : budget - used);
    if (n < 0 || pump_half(&pr.ab, left) < 0 || pump_half(&pr.ba, left) < 0) {
      out->end = "error";
      break;
    }
    if (progress_fd >= 0 && pr.ab.moved + pr.ba.moved - reported >= EGRESS_PROGRESS_BYTES) {
      char line[96];
      int len = snprintf(line, sizeof line, "progress %llu %llu\n", pr.ab.moved, pr.ba.moved);
      if (write(progress_fd, line, (size_t)len) < 0) {
        /* the proxy is gone: the tunnel goes on until it ends */
      }
      reported = pr.ab.moved + pr.ba.moved;
    }
    if (budget != 0 && pr.ab.moved + pr.ba.moved >= budget) {
      out->end = "byte_cap";
      break;
    }
    if (pair_done(&pr)) break;
  }
  out->a_to_b = pr.ab.moved;
  out->b_to_a = pr.ba.moved;
  pair_close(&pr);
}

int egress_relay_listen(const char *port) {
  char *end = NULL;
  long p = strtol(port, &end, 10);
  if (!end || *end || p < 1 || p > 65535) {
    fprintf(stderr, "egress relay: bad port %s\n", port);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "egress relay: socket: %s\n", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0) {
    fprintf(stderr, "egress relay: listen on 127.0.0.1:%ld: %s\n", p, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int connect_proxy(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  /* A Unix connect completes at once (or fails): blocking here costs nothing. */
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static void accept_all(int listen_fd, const char *proxy_socket) {
  for (;;) {
    int client = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return;
    struct pair *pr = NULL;
    for (int i = 0; i < MAX_PAIRS && !pr; i++)
      if (!pairs[i].used) pr = &pairs[i];
    int proxy = pr ? connect_proxy(proxy_socket) : -1;
    if (proxy < 0 || pair_open(pr, client, proxy) < 0) {
      /* Full, out of fds, or the proxy is gone: the client sees the connection closed. */
      if (proxy >= 0) close(proxy);
      close(client);
      continue;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

static void relay_loop(int listen_fd, const char *proxy_socket) {
  /* Only the pairs in use are polled: poll() refuses more entries than RLIMIT_NOFILE (256 in a sandbox). */
  static struct pollfd pfd[1 + 2 * MAX_PAIRS];
  static int owner[1 + 2 * MAX_PAIRS];
  for (;;) {
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < MAX_PAIRS; i++) {
      if (!pairs[i].used) continue;
      set_events(&pairs[i], &pfd[n], &pfd[n + 1]);
      owner[n] = owner[n + 1] = i;
      n += 2;
    }
    if (poll(pfd, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    for (int k = 1; k < n; k += 2) {
      struct pair *pr = &pairs[owner[k]];
      if (!pr->used || !(pfd[k].revents | pfd[k + 1].revents)) continue;
      if (pump_half(&pr->ab, ~0ULL) < 0 || pump_half(&pr->ba, ~0ULL) < 0 || pair_done(pr)) pair_close(pr);
    }
    if (pfd[0].revents & POLLIN) accept_all(listen_fd, proxy_socket);
  }
}

int egress_relay_spawn(const char *port, const char *proxy_socket) {
  int listen_fd = egress_relay_listen(port);
  if (listen_fd < 0) return -1;
  pid_t first = fork();
  if (first < 0) {
    fprintf(stderr, "egress relay: fork: %s\n", strerror(errno));
    close(listen_fd);
    return -1;
  }
  if (first == 0) {
    if (fork() != 0) _exit(0); /* the relay is the grandchild: PID 1 of the sandbox adopts it */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Nothing of the payload's stdio: the relay writes nowhere, and holds no pipe of the runner open. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2), close(null);
    for (int fd = 3; fd < 1024; fd++)
      if (fd != listen_fd) close(fd);
    relay_loop(listen_fd, proxy_socket);
    _exit(0);
  }
  close(listen_fd);
  int st;
  while (waitpid(first, &st, 0) < 0 && errno == EINTR) {
  }
  return 0;
}
