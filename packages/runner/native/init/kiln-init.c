/*
 * kiln-init: PID 1 of a persistent kiln sandbox.
 *
 * It reaps every process of the sandbox (orphans too), listens on a Unix socket in the bind-mounted
 * control folder (default /run/kiln/init.sock) and runs the commands sent over it. It is static and
 * needs nothing but the kernel, so it starts before anything of the sandbox's /usr is touched.
 *
 * Usage: kiln-init [--cpu-seconds N] [--egress-relay PORT PROXY_SOCKET] [SOCKET_PATH]
 *   --egress-relay (allowlist egress only) starts the egress relay (native/egress-relay) first.
 *   --cpu-seconds N gives each command its own RLIMIT_CPU (soft N, hard N+1), so the CPU limit is per
 *   command and the long-lived init never exhausts a budget meant for one step.
 *   Prints "ready\n" on stdout once the socket listens, then never writes to stdout again.
 *   Outside a pid namespace (tests) it makes itself a child subreaper so it still reaps orphans.
 *
 * PROTOCOL (mirrored in packages/runner/src/sandbox/persistent/protocol.ts)
 *
 *   Every message is a frame: 1 byte type, 4 bytes payload length (big-endian), payload.
 *   A payload is at most 65536 bytes. Clients send upper-case types, the init lower-case ones.
 *   One connection carries one command (or one port tunnel); many connections may be open at once
 *   (at most 64; further connections are closed at once), so commands can run side by side.
 *
 *   client -> init, before the command starts:
 *     'A' one argv element (at least one, at most 1024; no NUL bytes)
 *     'E' one environment entry "NAME=value" (at most 1024). The command gets exactly these.
 *     'D' working directory (default: the init's own, /workspace in a sandbox)
 *     'T' timeout: uint32 milliseconds, big-endian (0 or absent: none)
 *     'X' start the command (empty payload)
 *     'P' instead of a command: uint16 port, big-endian. The init answers 'p' and from then on the
 *         connection is a raw byte tunnel to 127.0.0.1:port inside the sandbox (or 'f' on failure).
 *   client -> init, after 'X':
 *     'I' bytes for the command's stdin
 *     'C' close the command's stdin
 *     'K' kill the command's process group (SIGKILL)
 *   init -> client:
 *     's' started: uint32 pid (in the sandbox's pid namespace), big-endian
 *     'o' stdout bytes, 'e' stderr bytes, streamed as the command produces them
 *     'x' exit: 1 byte kind (0 exited, 1 killed by a signal), uint32 code or signal number, 1 byte
 *         flags (bit 0: the timeout fired, bit 1: killed on request). The init closes after it.
 *     'f' failure: a UTF-8 message about a bad request; the init closes after it.
 *     'p' tunnel ready (empty payload)
 *
 *   Semantics:
 *   - Each command runs in its own process group (pgid = its pid) with its own stdin/stdout/stderr pipes.
 *   - A command is over when its main process ends: output already written is drained and sent, then
 *     'x'. Processes it left in the background keep running (services), but their output pipes are
 *     closed: redirect their output if they must keep writing.
 *   - The timeout, 'K' and the client closing the connection early all SIGKILL the whole group.
 *   - A command that cannot start (no such file, bad cwd) ends with code 127/126 and a message on stderr.
 *   - Output is sent no faster than the client reads it: a slow client stalls the command's pipes
 *     (back-pressure), never the init's memory. Garbage on the socket ends that connection only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../egress-relay/egress-relay.h"

#define HEADER_BYTES 5
#define MAX_PAYLOAD 65536
#define MAX_CONNS 64
#define MAX_ARGS 1024
#define MAX_ENV 1024
/* Arguments and environment together, like the kernel's own ARG_MAX order of magnitude. */
#define MAX_ARG_BYTES (2 * 1024 * 1024)
#define IN_CAP (HEADER_BYTES + MAX_PAYLOAD)
/* Room for a few output frames per connection before the command's pipes are left unread. */
#define OUT_CAP (4 * (HEADER_BYTES + 16384))
#define READ_CHUNK 16384
#define DEFAULT_SOCKET "/run/kiln/init.sock"

enum conn_state { SETUP, RUNNING, CLOSING };

struct conn {
  int fd; /* -1: free slot */
  enum conn_state state;
  uint8_t *in;
  size_t in_len;
  uint8_t *out;
  size_t out_off, out_len;
  /* request being built */
  char **argv;
  size_t argc;
  char **envp;
  size_t envc;
  size_t arg_bytes;
  char *cwd;
  uint32_t timeout_ms;
  /* running command */
  pid_t pid;
  int stdin_fd, stdout_fd, stderr_fd;
  uint8_t *stdin_pending;
  size_t stdin_pending_len, stdin_pending_off;
  int stdin_close_requested;
  struct timespec deadline;
  int has_deadline;
  int exited;
  int exit_status;
  int timed_out, kill_requested;
};

static struct conn conns[MAX_CONNS];
static unsigned long cpu_seconds; /* 0: commands inherit the init's RLIMIT_CPU */
static int listen_fd = -1;
static int signal_fd = -1;

static void die(const char *what) {
  fprintf(stderr, "kiln-init: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void noop_handler(int sig) { (void)sig; }

static uint32_t get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static size_t out_free(const struct conn *c) { return OUT_CAP - (c->out_len - c->out_off); }

/* Reserves room for a frame of `len` payload bytes; returns where the payload goes, or NULL if full. */
static uint8_t *frame_begin(struct conn *c, char type, size_t len) {
  if (out_free(c) < HEADER_BYTES + len) return NULL;
  if (OUT_CAP - c->out_len < HEADER_BYTES + len) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  uint8_t *h = c->out + c->out_len;
  h[0] = (uint8_t)type;
  put_u32(h + 1, (uint32_t)len);
  c->out_len += HEADER_BYTES + len;
  return h + HEADER_BYTES;
}

/* Control frames are tiny; OUT_CAP keeps room for them because output reads leave a margin. */
static void frame_put(struct conn *c, char type, const void *payload, size_t len) {
  uint8_t *p = frame_begin(c, type, len);
  if (p && len) memcpy(p, payload, len);
}

static void fail(struct conn *c, const char *message) {
  frame_put(c, 'f', message, strlen(message));
  c->state = CLOSING;
}

static void free_strings(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Frees the slot; a command still running is killed (the client gave up on it) and later reaped. */
static void conn_close(struct conn *c) {
  if (c->pid > 0 && !c->exited) kill(-c->pid, SIGKILL);
  close_fd(&c->fd);
  close_fd(&c->stdin_fd);
  close_fd(&c->stdout_fd);
  close_fd(&c->stderr_fd);
  free(c->in);
  free(c->out);
  free(c->stdin_pending);
  free_strings(c->argv, c->argc);
  free_strings(c->envp, c->envc);
  free(c->cwd);
  memset(c, 0, sizeof *c);
  c->fd = c->stdin_fd = c->stdout_fd = c->stderr_fd = -1;
}

static struct timespec now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}

static long long ms_until(struct timespec t) {
  struct timespec n = now();
  return (long long)(t.tv_sec - n.tv_sec) * 1000 + (t.tv_nsec - n.tv_nsec) / 1000000;
}

static int set_nonblock(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* In the forked child: back to a plain process (default signals, nothing blocked). */
static void reset_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_exec(struct conn *c, int in_r, int out_w, int err_w) {
  reset_signals();
  setpgid(0, 0);
  if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) _exit(126);
  closefrom(3);
  /* The command, not the init, should be the cgroup OOM killer's choice. Raising needs no privilege. */
  int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) {
    if (write(oom, "500", 3) < 0) { /* best effort */
    }
    close(oom);
  }
  if (cpu_seconds) {
    struct rlimit rl = {.rlim_cur = cpu_seconds, .rlim_max = cpu_seconds + 1};
    if (setrlimit(RLIMIT_CPU, &rl) < 0) {
      dprintf(2, "kiln-init: cannot set the CPU limit: %s\n", strerror(errno));
      _exit(126);
    }
  }
  if (c->cwd && chdir(c->cwd) < 0) {
    dprintf(2, "kiln-init: cannot enter %s: %s\n", c->cwd, strerror(errno));
    _exit(126);
  }
  /* execvp looks argv[0] up in the PATH of `environ`, so the command's own PATH applies. */
  environ = c->envp;
  execvp(c->argv[0], c->argv);
  int e = errno;
  dprintf(2, "kiln-init: cannot run %s: %s\n", c->argv[0], strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

static void start_command(struct conn *c) {
  int in_p[2], out_p[2], err_p[2];
  if (pipe2(in_p, O_CLOEXEC) < 0) return fail(c, "pipe failed");
  if (pipe2(out_p, O_CLOEXEC) < 0) {
    close(in_p[0]), close(in_p[1]);
    return fail(c, "pipe failed");
  }
  if (pipe2(err_p, O_CLOEXEC) < 0) {
    close(in_p[0]), close(in_p[1]), close(out_p[0]), close(out_p[1]);
    return fail(c, "pipe failed");
  }
  /* NULL-terminate argv and envp for execve (room was kept when they grew). */
  c->argv[c->argc] = NULL;
  if (!c->envp) c->envp = calloc(1, sizeof(char *));
  if (!c->envp) abort();
  c->envp[c->envc] = NULL;
  pid_t pid = fork();
  if (pid == 0) child_exec(c, in_p[0], out_p[1], err_p[1]);
  close(in_p[0]), close(out_p[1]), close(err_p[1]);
  if (pid < 0) {
    close(in_p[1]), close(out_p[0]), close(err_p[0]);
    return fail(c, "fork failed (pids limit?)");
  }
  setpgid(pid, pid); /* also in the parent, so a kill right after start reaches the group */
  c->pid = pid;
  c->stdin_fd = in_p[1];
  c->stdout_fd = out_p[0];
  c->stderr_fd = err_p[0];
  set_nonblock(c->stdin_fd);
  set_nonblock(c->stdout_fd);
  set_nonblock(c->stderr_fd);
  if (c->timeout_ms) {
    c->deadline = now();
    c->deadline.tv_sec += c->timeout_ms / 1000;
    c->deadline.tv_nsec += (long)(c->timeout_ms % 1000) * 1000000;
    if (c->deadline.tv_nsec >= 1000000000) c->deadline.tv_sec++, c->deadline.tv_nsec -= 1000000000;
    c->has_deadline = 1;
  }
  c->state = RUNNING;
  uint8_t p[4];
  put_u32(p, (uint32_t)pid);
  frame_put(c, 's', p, 4);
}

/* The tunnel child: raw bytes between the client and 127.0.0.1:port, with blocking IO. */
static void tunnel_child(int client, uint16_t port) {
  reset_signals();
  signal(SIGPIPE, SIG_IGN);
  if (client != 3) {
    if (dup2(client, 3) < 0) _exit(1);
    client = 3;
  }
  closefrom(4);
  int flags = fcntl(client, F_GETFL);
  fcntl(client, F_SETFL, flags & ~O_NONBLOCK);
  uint8_t h[HEADER_BYTES] = {0};
  int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (tcp < 0 || connect(tcp, (struct sockaddr *)&a, sizeof a) < 0) {
    char msg[160];
    int n = snprintf(msg, sizeof msg, "connect to 127.0.0.1:%u: %s", port, strerror(errno));
    h[0] = 'f';
    put_u32(h + 1, (uint32_t)n);
    if (write(client, h, sizeof h) == sizeof h && write(client, msg, (size_t)n) < 0) _exit(1);
    _exit(1);
  }
  h[0] = 'p';
  if (write(client, h, sizeof h) != sizeof h) _exit(1);
  struct pollfd p[2] = {{.fd = client, .events = POLLIN}, {.fd = tcp, .events = POLLIN}};
  int open_dirs = 2;
  static uint8_t buf[65536];
  while (open_dirs > 0) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    for (int i = 0; i < 2; i++) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int to = i == 0 ? tcp : client;
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        shutdown(to, SHUT_WR);
        p[i].fd = -1;
        open_dirs--;
        continue;
      }
      for (ssize_t done = 0; done < n;) {
        ssize_t w = write(to, buf + done, (size_t)(n - done));
        if (w <= 0) _exit(0);
        done += w;
      }
    }
  }
  _exit(0);
}

static char *dup_payload(const uint8_t *p, uint32_t len) {
  if (memchr(p, 0, len)) return NULL;
  char *s = malloc(len + 1);
  if (!s) abort();
  memcpy(s, p, len);
  s[len] = 0;
  return s;
}

/* Appends to a NULL-terminated vector, keeping room for the terminator. */
static int push_string(struct conn *c, char ***v, size_t *n, size_t max, const uint8_t *p, uint32_t len) {
  if (*n >= max) return fail(c, "too many argv or env entries"), -1;
  if (c->arg_bytes + len > MAX_ARG_BYTES) return fail(c, "argv and env too large"), -1;
  char *s = dup_payload(p, len);
  if (!s) return fail(c, "NUL byte in a string"), -1;
  char **grown = realloc(*v, (*n + 2) * sizeof(char *));
  if (!grown) abort();
  *v = grown;
  grown[(*n)++] = s;
  c->arg_bytes += len;
  return 0;
}

/* Handles one complete frame from the client. */
static void handle_frame(struct conn *c, int slot, uint8_t type, const uint8_t *p, uint32_t len) {
  if (c->state == SETUP) {
    switch (type) {
    case 'A':
      push_string(c, &c->argv, &c->argc, MAX_ARGS, p, len);
      return;
    case 'E':
      if (!memchr(p, '=', len)) return fail(c, "env entry without '='");
      push_string(c, &c->envp, &c->envc, MAX_ENV, p, len);
      return;
    case 'D':
      free(c->cwd);
      c->cwd = dup_payload(p, len);
      if (!c->cwd || len == 0) fail(c, "bad working directory");
      return;
    case 'T':
      if (len != 4) return fail(c, "timeout must be 4 bytes");
      c->timeout_ms = get_u32(p);
      return;
    case 'X':
      if (c->argc == 0) return fail(c, "no argv");
      start_command(c);
      return;
    case 'P': {
      if (len != 2 || c->argc) return fail(c, "bad tunnel request");
      uint16_t port = (uint16_t)((p[0] << 8) | p[1]);
      pid_t pid = fork();
      if (pid == 0) tunnel_child(c->fd, port);
      if (pid < 0) return fail(c, "fork failed (pids limit?)");
      /* The child owns the connection now; the init only reaps it. */
      conn_close(&conns[slot]);
      return;
    }
    default:
      return fail(c, "unexpected frame before start");
    }
  }
  if (c->state != RUNNING) return;
  switch (type) {
  case 'I':
    if (c->stdin_fd < 0 || c->stdin_close_requested) return; /* the command closed it; drop */
    if (len == 0) return;
    c->stdin_pending = malloc(len);
    if (!c->stdin_pending) abort();
    memcpy(c->stdin_pending, p, len);
    c->stdin_pending_len = len;
    c->stdin_pending_off = 0;
    return;
  case 'C':
    c->stdin_close_requested = 1;
    if (!c->stdin_pending) close_fd(&c->stdin_fd);
    return;
  case 'K':
    if (!c->exited) kill(-c->pid, SIGKILL);
    c->kill_requested = 1;
    return;
  default:
    return fail(c, "unexpected frame after start");
  }
}

/* Handles every complete frame buffered from the client. Stops at a pending stdin write: frames
 * behind it wait until the command has taken the bytes (the back-pressure on stdin). Returns -1 when
 * the slot was freed (the connection became a tunnel). */
static int parse_frames(struct conn *c, int slot) {
  size_t off = 0;
  while (c->state != CLOSING && !c->stdin_pending && c->in_len - off >= HEADER_BYTES) {
    uint32_t len = get_u32(c->in + off + 1);
    if (len > MAX_PAYLOAD) {
      fail(c, "frame too large");
      break;
    }
    if (c->in_len - off < HEADER_BYTES + len) break;
    handle_frame(c, slot, c->in[off], c->in + off + HEADER_BYTES, len);
    if (conns[slot].fd < 0) return -1;
    off += HEADER_BYTES + len;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return 0;
}

/* Reads what the client sent. EOF or an error before the command ended cancels it. */
static void conn_read(struct conn *c, int slot) {
  if (!c->in) c->in = malloc(IN_CAP);
  if (!c->in) abort();
  ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    conn_close(c);
    return;
  }
  if (n < 0) return;
  c->in_len += (size_t)n;
  parse_frames(c, slot);
}

/* Moves stdin bytes into the command's pipe, then handles the frames that waited behind them. */
static void conn_write_stdin(struct conn *c, int slot) {
  ssize_t n = write(c->stdin_fd, c->stdin_pending + c->stdin_pending_off,
                    c->stdin_pending_len - c->stdin_pending_off);
  if (n < 0 && errno == EAGAIN) return;
  if (n < 0) {
    /* The command closed its stdin: drop what is left. */
    c->stdin_pending_off = c->stdin_pending_len;
    close_fd(&c->stdin_fd);
  } else {
    c->stdin_pending_off += (size_t)n;
  }
  if (c->stdin_pending_off < c->stdin_pending_len) return;
  free(c->stdin_pending);
  c->stdin_pending = NULL;
  if (c->stdin_close_requested) close_fd(&c->stdin_fd);
  if (c->in) parse_frames(c, slot);
}

/* Reads one chunk of a command's output into an output frame. Closes the pipe at EOF, and, once the
 * main process has ended, as soon as it is empty (background processes do not hold the command open). */
static void pump_output(struct conn *c, int *fd, char type) {
  if (*fd < 0 || out_free(c) < HEADER_BYTES + 64 + HEADER_BYTES + 16) return;
  size_t room = out_free(c) - HEADER_BYTES - 16; /* margin for the 'x' frame */
  if (room > READ_CHUNK) room = READ_CHUNK;
  uint8_t buf[READ_CHUNK];
  ssize_t n = read(*fd, buf, room);
  if (n > 0) {
    frame_put(c, type, buf, (size_t)n);
    return;
  }
  if (n == 0 || errno != EAGAIN || c->exited) close_fd(fd);
}

static void conn_flush(struct conn *c) {
  ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
  if (n < 0) {
    /* The client is gone: same as a hang-up (the command, if still running, is killed). */
    if (errno != EAGAIN && errno != EINTR) conn_close(c);
    return;
  }
  c->out_off += (size_t)n;
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

static void finish_if_done(struct conn *c) {
  if (c->state != RUNNING || !c->exited) return;
  /* Drain what the main process wrote before it ended. */
  while (c->stdout_fd >= 0 && out_free(c) > HEADER_BYTES + 64 + HEADER_BYTES + 16) pump_output(c, &c->stdout_fd, 'o');
  while (c->stderr_fd >= 0 && out_free(c) > HEADER_BYTES + 64 + HEADER_BYTES + 16) pump_output(c, &c->stderr_fd, 'e');
  if (c->stdout_fd >= 0 || c->stderr_fd >= 0) return; /* wait for the client to read */
  uint8_t p[6];
  int st = c->exit_status;
  p[0] = WIFSIGNALED(st) ? 1 : 0;
  put_u32(p + 1, (uint32_t)(WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st)));
  p[5] = (uint8_t)((c->timed_out ? 1 : 0) | (c->kill_requested ? 2 : 0));
  frame_put(c, 'x', p, 6);
  close_fd(&c->stdin_fd);
  c->state = CLOSING;
}

static void reap(void) {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return;
    for (int i = 0; i < MAX_CONNS; i++) {
      if (conns[i].fd >= 0 && conns[i].pid == pid && !conns[i].exited) {
        conns[i].exited = 1;
        conns[i].exit_status = st;
      }
    }
  }
}

static void accept_all(void) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int slot = -1;
    for (int i = 0; i < MAX_CONNS && slot < 0; i++)
      if (conns[i].fd < 0) slot = i;
    if (slot < 0) {
      close(fd); /* bounded: the client sees EOF and may retry */
      continue;
    }
    struct conn *c = &conns[slot];
    c->fd = fd;
    c->state = SETUP;
    c->out = malloc(OUT_CAP);
    if (!c->out) abort();
  }
}

static void shutdown_all(void) {
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].fd >= 0 || conns[i].pid > 0) conn_close(&conns[i]);
  exit(0);
}

static void setup(const char *path) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  /* Handlers (never run: the signals are blocked) so that, as PID 1, these signals are not dropped. */
  struct sigaction sa = {.sa_handler = noop_handler};
  sigaction(SIGCHLD, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) die("sigprocmask");
  signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) die("signalfd");
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "kiln-init: socket path too long\n");
    exit(2);
  }
  strcpy(addr.sun_path, path);
  unlink(path);
  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) die("socket");
  mode_t old = umask(0177);
  if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  umask(old);
  if (listen(listen_fd, MAX_CONNS) < 0) die("listen");
  for (int i = 0; i < MAX_CONNS; i++) {
    memset(&conns[i], 0, sizeof conns[i]);
    conns[i].fd = conns[i].stdin_fd = conns[i].stdout_fd = conns[i].stderr_fd = -1;
  }
  if (write(1, "ready\n", 6) != 6) die("write ready");
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) dup2(null, 1), close(null);
}

int main(int argc, char **argv) {
  int arg = 1;
  if (arg + 1 < argc && strcmp(argv[arg], "--cpu-seconds") == 0) {
    char *end = NULL;
    cpu_seconds = strtoul(argv[arg + 1], &end, 10);
    if (!end || *end || cpu_seconds == 0) {
      fprintf(stderr, "kiln-init: --cpu-seconds wants a positive integer\n");
      return 2;
    }
    arg += 2;
  }
  /* Before setup(): the relay must not inherit the blocked signals and the signalfd of the init. */
  if (arg + 2 < argc && strcmp(argv[arg], "--egress-relay") == 0) {
    if (egress_relay_spawn(argv[arg + 1], argv[arg + 2]) < 0) return 2;
    arg += 3;
  }
  setup(arg < argc ? argv[arg] : DEFAULT_SOCKET);
  /* One pollfd for the socket and three for each connection's command pipes. */
  static struct pollfd pfd[2 + 4 * MAX_CONNS];
  static int owner[2 + 4 * MAX_CONNS];
  for (;;) {
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
    long long timeout = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
      struct conn *c = &conns[i];
      if (c->fd < 0) continue;
      short ev = 0;
      if (c->state != CLOSING && !c->stdin_pending) ev |= POLLIN;
      if (c->out_len > c->out_off) ev |= POLLOUT;
      owner[n] = i, pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
      if (c->state != RUNNING) continue;
      owner[n] = i, pfd[n++] = (struct pollfd){.fd = c->stdout_fd, .events = POLLIN};
      owner[n] = i, pfd[n++] = (struct pollfd){.fd = c->stderr_fd, .events = POLLIN};
      owner[n] = i, pfd[n++] = (struct pollfd){.fd = c->stdin_pending ? c->stdin_fd : -1, .events = POLLOUT};
      if (out_free(c) < HEADER_BYTES + 64 + HEADER_BYTES + 16) pfd[n - 3].fd = pfd[n - 2].fd = -1;
      if (c->has_deadline && !c->exited && !c->timed_out) {
        long long ms = ms_until(c->deadline);
        if (ms < 0) ms = 0;
        if (timeout < 0 || ms < timeout) timeout = ms;
      }
    }
    if (poll(pfd, (nfds_t)n, (int)timeout) < 0 && errno != EINTR) die("poll");

    if (pfd[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(signal_fd, &si, sizeof si) == sizeof si)
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) shutdown_all();
      reap();
    }
    if (pfd[0].revents & POLLIN) accept_all();

    for (int k = 2; k < n; k++) {
      struct conn *c = &conns[owner[k]];
      if (!pfd[k].revents || pfd[k].fd < 0 || c->fd < 0) continue;
      if (pfd[k].fd == c->fd) {
        if (pfd[k].revents & POLLOUT) conn_flush(c);
        if (c->fd >= 0 && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) {
          if (pfd[k].revents & POLLIN) conn_read(c, owner[k]);
          else conn_close(c);
        }
      } else if (pfd[k].fd == c->stdout_fd) {
        pump_output(c, &c->stdout_fd, 'o');
      } else if (pfd[k].fd == c->stderr_fd) {
        pump_output(c, &c->stderr_fd, 'e');
      } else if (pfd[k].fd == c->stdin_fd && c->stdin_pending) {
        conn_write_stdin(c, owner[k]);
      }
    }

    for (int i = 0; i < MAX_CONNS; i++) {
      struct conn *c = &conns[i];
      if (c->fd < 0) continue;
      if (c->state == RUNNING && c->has_deadline && !c->exited && !c->timed_out && ms_until(c->deadline) <= 0) {
        kill(-c->pid, SIGKILL);
        c->timed_out = 1;
      }
      finish_if_done(c);
      if (c->out_len > c->out_off) conn_flush(c);
      if (c->fd >= 0 && c->state == CLOSING && c->out_len == c->out_off) conn_close(c);
    }
  }
}
