/* See egress-relay.h. One poll loop, a bounded table of connection pairs, a buffer each way. */
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
#define MAX_PAIRS 256
#define BUF_BYTES (64 * 1024)

struct half {
  int from, to;
  size_t len, off;
  int eof; /* `from` said EOF: shut `to` down for writing once the buffer is drained */
  char *buf;
};

struct pair {
  int used;
  struct half up;   /* sandbox client -> proxy */
  struct half down; /* proxy -> sandbox client */
};

static struct pair pairs[MAX_PAIRS];

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

static void pair_close(struct pair *pr) {
  close(pr->up.from);
  close(pr->up.to);
  free(pr->up.buf);
  free(pr->down.buf);
  memset(pr, 0, sizeof *pr);
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
    char *a = proxy >= 0 ? malloc(BUF_BYTES) : NULL, *b = a ? malloc(BUF_BYTES) : NULL;
    if (!b) {
      /* Full, or the proxy is gone: the client sees the connection closed, as a refused one. */
      free(a);
      if (proxy >= 0) close(proxy);
      close(client);
      continue;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pr->used = 1;
    pr->up = (struct half){.from = client, .to = proxy, .buf = a};
    pr->down = (struct half){.from = proxy, .to = client, .buf = b};
  }
}

/* Moves what it can; returns -1 when the pair is finished or broken. */
static int pump(struct half *h, short from_ev, short to_ev) {
  if ((from_ev & (POLLIN | POLLHUP | POLLERR)) && !h->eof && h->len == 0) {
    ssize_t n = read(h->from, h->buf, BUF_BYTES);
    if (n > 0) h->len = (size_t)n, h->off = 0;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR)) h->eof = 1;
  }
  if (h->len > h->off) { /* non-blocking: a full peer answers EAGAIN */
    ssize_t n = write(h->to, h->buf + h->off, h->len - h->off);
    if (n > 0) h->off += (size_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (h->off == h->len) h->len = h->off = 0;
  }
  if (to_ev & (POLLERR)) return -1;
  if (h->eof && h->len == 0 && h->eof != 2) {
    shutdown(h->to, SHUT_WR);
    h->eof = 2;
  }
  return 0;
}

static void relay_loop(int listen_fd, const char *proxy_socket) {
  static struct pollfd pfd[1 + 2 * MAX_PAIRS];
  for (;;) {
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < MAX_PAIRS; i++) {
      struct pair *pr = &pairs[i];
      if (!pr->used) continue;
      /* fd index 1+2i: the client, 2+2i: the proxy; read when the buffer is empty, write when full. */
      short ce = 0, pe = 0;
      if (!pr->up.eof && pr->up.len == 0) ce |= POLLIN;
      if (pr->down.len > pr->down.off) ce |= POLLOUT;
      if (!pr->down.eof && pr->down.len == 0) pe |= POLLIN;
      if (pr->up.len > pr->up.off) pe |= POLLOUT;
      pfd[1 + 2 * i] = (struct pollfd){.fd = pr->up.from, .events = ce};
      pfd[2 + 2 * i] = (struct pollfd){.fd = pr->down.from, .events = pe};
      n = 3 + 2 * i;
    }
    for (int i = 0; i < MAX_PAIRS; i++)
      if (!pairs[i].used && 2 + 2 * i < n) pfd[1 + 2 * i].fd = pfd[2 + 2 * i].fd = -1;
    if (poll(pfd, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    for (int i = 0; i < MAX_PAIRS; i++) {
      struct pair *pr = &pairs[i];
      if (!pr->used || 2 + 2 * i >= n) continue;
      short ce = pfd[1 + 2 * i].revents, pe = pfd[2 + 2 * i].revents;
      if (!ce && !pe) continue;
      if (pump(&pr->up, ce, pe) < 0 || pump(&pr->down, pe, ce) < 0 || (pr->up.eof == 2 && pr->down.eof == 2)) {
        pair_close(pr);
      }
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
