/*
 * kiln-spawner: a small fork server that starts kiln-launch (or any helper) for the runner, so the
 * runner's Node process never forks itself on the hot path. libuv's spawn() forks all of Node (about
 * 2.6 ms of blocked main thread at 200 MB RSS); forking this small static process costs a fraction of it,
 * and it happens off Node's main thread.
 *
 * Started once per runner process (lazily, by src/sandbox/spawner-client.ts):
 *
 *   kiln-spawner --socket PATH --parent PID
 *
 * It asks for SIGKILL when its parent (the runner, PID) dies, listens on the Unix socket PATH (mode 0600,
 * in the root-only runtime folder), writes "ready\n" on stdout once listening, then serves forever.
 *
 * Why several connections per launch: Node cannot pass file descriptors over a Unix socket, so instead
 * of handing the spawner pipes, Node opens one connection per stdio stream the child needs, and the
 * spawner dup2()s the accepted sockets onto the child's fds 0..5. This changes nothing for the payload:
 * libuv's stdio "pipes" are Unix socketpairs too (half-close gives EOF on stdin; opening /dev/stdout fails
 * with ENXIO either way).
 *
 * The protocol (mirrored in src/sandbox/spawner-protocol.ts). Every connection starts with one hello
 * frame: a little-endian u32 body length (1..MAX_REQUEST) and the body. A connection whose first frame
 * is malformed is closed; nothing else happens.
 *
 *   control hello:  'C' KEY[32] MODES[6] u32:argc u32:envc  then argc+envc NUL-terminated strings
 *                   (argv first, argv[0] is the program's path; then the environment) filling the body
 *                   exactly. KEY is 32 lowercase hex digits chosen by the client, one per launch.
 *                   MODES[i] says what the child's fd i is: 0 closed, 1 /dev/null, 2 a stream connection.
 *   stream hello:   'S' KEY[32] FD (one byte, 0..5): this connection becomes the child's fd FD.
 *
 * Stream connections may arrive before or after their control connection. Once the control connection
 * and every stream it asked for are here, the spawner forks; the child resets every signal disposition
 * to the default, empties its signal mask, asks for SIGKILL when the spawner dies, gets exactly fds 0..5
 * (everything else is close-on-exec) and execs argv[0] with the given environment, in the spawner's
 * process group (the runner's, as with spawn()). Answers on the control connection, one line each:
 *
 *   pid N             the child exists (sent right after fork)
 *   error TEXT        the launch failed (then, with no child, the spawner half-closes as after exit), or exec failed
 *                     (then "exit 127 -" follows)
 *   exit CODE SIGNAL  the child was reaped: CODE is its exit code or "-", SIGNAL the number or "-";
 *                     then the spawner half-closes and waits for the client to close (HELLO_TIMEOUT_MS)
 *
 * After its hello the client may write single bytes on the control connection: each is a signal number
 * (1..64) sent to the child if it was not reaped yet (no pid-reuse race, since the spawner reaps); one
 * that comes before the fork is sent right after it.
 * Closing the control connection before "exit" kills the child with SIGKILL.
 *
 * Bounds: MAX_CONNS connections (more are closed at once), MAX_LAUNCHES launches waiting or running (more
 * get "error"), MAX_REQUEST bytes per hello, HELLO_TIMEOUT_MS for a hello to arrive and for a launch to
 * gather its streams. The spawner never reads past a hello: later bytes on a stream belong to the child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_LAUNCHES 256
#define MAX_REQUEST (1024 * 1024)
#define MAX_STRINGS 65536
#define HELLO_TIMEOUT_MS 10000
#define KEY_LEN 32
#define CHILD_FDS 6
#define EXEC_FAILED 127

enum { MODE_CLOSED = 0, MODE_NULL = 1, MODE_STREAM = 2 };
enum { CONN_HELLO, CONN_STREAM, CONN_CONTROL, CONN_DONE };

struct launch;

struct conn {
  int fd;
  int kind;
  unsigned char hdr[4];
  size_t hdr_got;
  uint32_t body_len;
  char *body;
  size_t body_got;
  long long deadline_ms;
  char key[KEY_LEN];
  int child_fd;           /* stream: which fd of the child */
  struct launch *launch;  /* stream or control: its launch once matched */
  struct conn *prev, *next;
  struct conn *grave_next; /* freed conns wait here until the end of the event batch */
};

struct launch {
  char key[KEY_LEN];
  struct conn *control; /* NULL once the client closed it */
  struct conn *streams[CHILD_FDS];
  unsigned char modes[CHILD_FDS];
  char *request;        /* the control hello's body, which argv and envp point into */
  char **argv, **envp;
  pid_t pid;            /* 0 while waiting for streams */
  int exec_pipe;        /* read end: 4 bytes of errno if exec failed */
  int pending_signal;   /* asked for before the fork: sent right after it */
  long long deadline_ms;
  int used;
};

static struct conn *conns, *graveyard;
static int nconns;
static struct launch launches[MAX_LAUNCHES];
static int epfd, listen_fd, sig_fd, null_fd;
static pid_t self_pid;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fatal(const char *what) {
  fprintf(stderr, "kiln-spawner: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void watch(int fd, void *ptr) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) fatal("epoll_ctl");
}

static void unwatch(int fd) { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

/* Closes a connection now; its memory goes only after the current event batch, which may still name it
   (a later event of the batch, or an iteration's next pointer). A closed conn has fd -1. */
static void conn_free(struct conn *c) {
  if (c->fd < 0) return;
  unwatch(c->fd);
  close(c->fd);
  c->fd = -1;
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->grave_next = graveyard;
  graveyard = c;
  nconns--;
}

static void bury(void) {
  while (graveyard) {
    struct conn *c = graveyard;
    graveyard = c->grave_next;
    free(c->body);
    free(c);
  }
}

static void say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct conn *c, const char *fmt, ...) {
  if (!c) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  /* Lines are tiny and the client reads them; a full buffer means a client that stopped reading. */
  (void)!send(c->fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void launch_free(struct launch *l) {
  for (int i = 0; i < CHILD_FDS; i++)
    if (l->streams[i]) conn_free(l->streams[i]);
  if (l->control) conn_free(l->control);
  if (l->exec_pipe >= 0) close(l->exec_pipe);
  free(l->argv);
  free(l->envp);
  free(l->request);
  memset(l, 0, sizeof *l);
  l->exec_pipe = -1;
}

/* Half-closes a control connection whose launch is over and keeps it until the client closes: closing
   outright could reset a kill request it is writing at this moment, and a reset makes it lose the last
   line, still unread. */
static void control_done(struct launch *l) {
  struct conn *c = l->control;
  if (!c) return;
  shutdown(c->fd, SHUT_WR);
  c->kind = CONN_DONE;
  c->launch = NULL;
  c->deadline_ms = now_ms() + HELLO_TIMEOUT_MS;
  l->control = NULL;
}

/* A launch that never started: tell the client why and drop everything it holds. */
static void launch_fail(struct launch *l, const char *why) {
  say(l->control, "error %s", why);
  control_done(l);
  launch_free(l);
}

static struct launch *launch_by_key(const char *key) {
  for (int i = 0; i < MAX_LAUNCHES; i++)
    if (launches[i].used && memcmp(launches[i].key, key, KEY_LEN) == 0) return &launches[i];
  return NULL;
}

static void child_exec(struct launch *l, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Die with the spawner until the program asks for its own parent-death signal (kiln-launch, bwrap). */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != self_pid) _exit(EXEC_FAILED);
  int tmp[CHILD_FDS];
  /* Move the sources above 0..5 first so that no dup2 clobbers a source still needed. */
  for (int i = 0; i < CHILD_FDS; i++) {
    int src = l->modes[i] == MODE_STREAM ? l->streams[i]->fd : l->modes[i] == MODE_NULL ? null_fd : -1;
    tmp[i] = src < 0 ? -1 : fcntl(src, F_DUPFD_CLOEXEC, CHILD_FDS);
    if (src >= 0 && tmp[i] < 0) goto failed;
  }
  for (int i = 0; i < CHILD_FDS; i++) {
    if (tmp[i] < 0) close(i);
    else if (dup2(tmp[i], i) < 0) goto failed; /* dup2 leaves the new fd without close-on-exec */
  }
  /* Belt and braces (every fd of the spawner is close-on-exec already): nothing else reaches the program. */
  if (close_range(CHILD_FDS, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    for (int fd = CHILD_FDS; fd < 4096; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  execve(l->argv[0], l->argv, l->envp);
failed:;
  int e = errno;
  (void)!write(err_fd, &e, sizeof e);
  _exit(EXEC_FAILED);
}

static void launch_start(struct launch *l) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return launch_fail(l, "pipe failed");
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return launch_fail(l, "fork failed");
  }
  if (pid == 0) child_exec(l, p[1]);
  close(p[1]);
  l->exec_pipe = p[0];
  l->pid = pid;
  /* The child holds the streams now; the spawner's copies would keep them open past its exit. */
  for (int i = 0; i < CHILD_FDS; i++)
    if (l->streams[i]) {
      conn_free(l->streams[i]);
      l->streams[i] = NULL;
    }
  say(l->control, "pid %d", (int)pid);
  if (l->pending_signal) kill(pid, l->pending_signal);
}

static int launch_ready(const struct launch *l) {
  if (!l->control) return 0;
  for (int i = 0; i < CHILD_FDS; i++)
    if (l->modes[i] == MODE_STREAM && !l->streams[i]) return 0;
  return 1;
}

static int valid_key(const char *key) {
  for (int i = 0; i < KEY_LEN; i++)
    if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'))) return 0;
  return 1;
}

static uint32_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* Splits n NUL-terminated strings out of [p, end); NULL if they do not fill it exactly. */
static char **split_strings(char *p, char *end, uint32_t n, char **next) {
  char **v = calloc((size_t)n + 1, sizeof *v);
  if (!v) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    char *z = memchr(p, '\0', (size_t)(end - p));
    if (!z) {
      free(v);
      return NULL;
    }
    v[i] = p;
    p = z + 1;
  }
  *next = p;
  return v;
}

/* Attaches an identified stream to its launch (if it exists); a stream for a fd not asked for is dropped. */
static void stream_attach(struct conn *c, struct launch *l) {
  if (l->modes[c->child_fd] != MODE_STREAM || l->streams[c->child_fd] || l->pid) {
    conn_free(c);
    return;
  }
  l->streams[c->child_fd] = c;
  c->launch = l;
  if (launch_ready(l)) launch_start(l);
}

static void hello_done(struct conn *c) {
  char *b = c->body;
  uint32_t len = c->body_len;
  if (b[0] == 'S' && len == 1 + KEY_LEN + 1 && valid_key(b + 1) && (unsigned char)b[1 + KEY_LEN] < CHILD_FDS) {
    memcpy(c->key, b + 1, KEY_LEN);
    c->child_fd = (unsigned char)b[1 + KEY_LEN];
    c->kind = CONN_STREAM;
    free(c->body);
    c->body = NULL;
    /* From now on the bytes on this connection are the child's: stop reading it, and make it blocking
       again (the flag lives in the open file the child's fds will share). */
    unwatch(c->fd);
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
      conn_free(c);
      return;
    }
    c->deadline_ms = now_ms() + HELLO_TIMEOUT_MS;
    struct launch *l = launch_by_key(c->key);
    if (l) stream_attach(c, l);
    return;
  }
  const size_t fixed = 1 + KEY_LEN + CHILD_FDS + 8;
  if (b[0] != 'C' || len < fixed || !valid_key(b + 1) || b[len - 1] != '\0') {
    conn_free(c);
    return;
  }
  uint32_t argc = get_u32(b + 1 + KEY_LEN + CHILD_FDS), envc = get_u32(b + 1 + KEY_LEN + CHILD_FDS + 4);
  if (argc < 1 || argc > MAX_STRINGS || envc > MAX_STRINGS) {
    conn_free(c);
    return;
  }
  for (int i = 0; i < CHILD_FDS; i++)
    if ((unsigned char)b[1 + KEY_LEN + i] > MODE_STREAM) {
      conn_free(c);
      return;
    }
  char *end = b + len, *p = b + fixed;
  char **argv = split_strings(p, end, argc, &p);
  char **envp = argv ? split_strings(p, end, envc, &p) : NULL;
  if (!argv || !envp || p != end || argv[0][0] != '/') {
    free(argv);
    free(envp);
    conn_free(c);
    return;
  }
  c->kind = CONN_CONTROL;
  if (launch_by_key(b + 1)) {
    say(c, "error a launch with this key exists");
    free(argv);
    free(envp);
    conn_free(c);
    return;
  }
  struct launch *l = NULL;
  for (int i = 0; i < MAX_LAUNCHES && !l; i++)
    if (!launches[i].used) l = &launches[i];
  if (!l) {
    say(c, "error too many launches at once (%d)", MAX_LAUNCHES);
    free(argv);
    free(envp);
    conn_free(c);
    return;
  }
  l->used = 1;
  memcpy(l->key, b + 1, KEY_LEN);
  memcpy(l->modes, b + 1 + KEY_LEN, CHILD_FDS);
  l->argv = argv;
  l->envp = envp;
  /* The launch owns the strings: it may outlive its control connection (closed early by the client). */
  l->request = c->body;
  c->body = NULL;
  l->control = c;
  l->exec_pipe = -1;
  l->deadline_ms = now_ms() + HELLO_TIMEOUT_MS;
  c->launch = l;
  /* Streams that arrived first wait unmatched; adopt them. */
  struct conn *next;
  for (struct conn *s = conns; s; s = next) {
    next = s->next;
    if (s->fd >= 0 && s->kind == CONN_STREAM && !s->launch && memcmp(s->key, l->key, KEY_LEN) == 0) stream_attach(s, l);
  }
  if (l->used && !l->pid && launch_ready(l)) launch_start(l);
}

/* Reads exactly the hello frame, never a byte past it. */
static void hello_read(struct conn *c) {
  ssize_t n;
  if (c->hdr_got < 4) {
    n = read(c->fd, c->hdr + c->hdr_got, 4 - c->hdr_got);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      conn_free(c);
      return;
    }
    c->hdr_got += (size_t)n;
    if (c->hdr_got < 4) return;
    c->body_len = get_u32((const char *)c->hdr);
    if (c->body_len < 1 || c->body_len > MAX_REQUEST || !(c->body = malloc(c->body_len))) {
      conn_free(c);
      return;
    }
  }
  n = read(c->fd, c->body + c->body_got, c->body_len - c->body_got);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    conn_free(c);
    return;
  }
  c->body_got += (size_t)n;
  if (c->body_got == c->body_len) hello_done(c);
}

/* After its hello, a control connection carries signal numbers, or closes. */
static void control_read(struct conn *c) {
  struct launch *l = c->launch;
  unsigned char sigs[64];
  ssize_t n = read(c->fd, sigs, sizeof sigs);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    /* The client gave up on this launch: nothing may outlive its interest. */
    l->control = NULL;
    conn_free(c);
    if (l->pid) kill(l->pid, SIGKILL);
    else launch_free(l);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    if (sigs[i] < 1 || sigs[i] > 64) continue;
    if (l->pid) kill(l->pid, sigs[i]);
    else l->pending_signal = sigs[i]; /* a kill before the streams are all here must not be lost */
  }
}

/* A finished control connection: discard late kill requests until the client closes. */
static void drain(struct conn *c) {
  char sink[64];
  ssize_t n = read(c->fd, sink, sizeof sink);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) conn_free(c);
}

static void reap(void) {
  struct signalfd_siginfo si;
  while (read(sig_fd, &si, sizeof si) == sizeof si) {
  }
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    struct launch *l = NULL;
    for (int i = 0; i < MAX_LAUNCHES && !l; i++)
      if (launches[i].used && launches[i].pid == pid) l = &launches[i];
    if (!l) continue;
    int e = 0;
    /* The child wrote errno before exiting if exec failed; the pipe is at EOF otherwise. */
    if (read(l->exec_pipe, &e, sizeof e) == sizeof e) say(l->control, "error exec %s: %s", l->argv[0], strerror(e));
    if (WIFEXITED(status)) say(l->control, "exit %d -", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) say(l->control, "exit - %d", WTERMSIG(status));
    control_done(l);
    launch_free(l);
  }
}

static int spare_fd = -1; /* given up to accept-and-close a connection when out of fds */

static void accept_all(void) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
      /* Level-triggered epoll would spin on a backlog we cannot accept: drop one connection. */
      close(spare_fd);
      fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd >= 0) close(fd);
      spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      continue;
    }
    if (fd < 0) return;
    if (nconns >= MAX_CONNS) {
      close(fd);
      continue;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->kind = CONN_HELLO;
    c->deadline_ms = now_ms() + HELLO_TIMEOUT_MS;
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
    nconns++;
    watch(fd, c);
  }
}

/* Hellos that never came, streams whose launch never came, launches whose streams never came. */
static void expire(void) {
  long long now = now_ms();
  struct conn *next;
  for (struct conn *c = conns; c; c = next) {
    next = c->next;
    if ((c->kind == CONN_HELLO || c->kind == CONN_DONE || (c->kind == CONN_STREAM && !c->launch)) && now > c->deadline_ms)
      conn_free(c);
  }
  for (int i = 0; i < MAX_LAUNCHES; i++) {
    struct launch *l = &launches[i];
    if (l->used && !l->pid && now > l->deadline_ms) launch_fail(l, "timed out waiting for the stream connections");
  }
}

static void listen_on(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "kiln-spawner: socket path too long\n");
    exit(1);
  }
  strcpy(addr.sun_path, path);
  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) fatal("socket");
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
  mode_t old = umask(0177);
  if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0) fatal("bind");
  umask(old);
  if (listen(listen_fd, 256) != 0) fatal("listen");
}

int main(int argc, char **argv) {
  const char *path = NULL;
  long parent = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--socket") == 0) path = argv[i + 1];
    else if (strcmp(argv[i], "--parent") == 0) parent = strtol(argv[i + 1], NULL, 10);
  }
  if (!path || parent <= 0 || argc % 2 != 1) {
    fprintf(stderr, "usage: kiln-spawner --socket PATH --parent PID\n");
    return 2;
  }
  /* The runner's death must take the spawner, hence every sandbox, with it. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fatal("prctl");
  if (getppid() != (pid_t)parent) return 1;
  self_pid = getpid();
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0) fatal("sigprocmask");
  sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0) fatal("signalfd");
  null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) fatal("open /dev/null");
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (int i = 0; i < MAX_LAUNCHES; i++) launches[i].exec_pipe = -1;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) fatal("epoll_create1");
  listen_on(path);
  static int listen_tag, sig_tag;
  watch(listen_fd, &listen_tag);
  watch(sig_fd, &sig_tag);
  if (write(STDOUT_FILENO, "ready\n", 6) != 6) fatal("write ready");
  /* stdout was only for "ready": the runner stops reading it. */
  dup2(null_fd, STDOUT_FILENO);

  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(epfd, evs, 64, 1000);
    if (n < 0 && errno != EINTR) fatal("epoll_wait");
    for (int i = 0; i < n; i++) {
      void *tag = evs[i].data.ptr;
      if (tag == &listen_tag) accept_all();
      else if (tag == &sig_tag) reap();
      else {
        struct conn *c = tag;
        if (c->fd < 0) continue; /* closed earlier in this batch */
        if (c->kind == CONN_HELLO) hello_read(c);
        else if (c->kind == CONN_CONTROL) control_read(c);
        else if (c->kind == CONN_DONE) drain(c);
      }
    }
    expire();
    bury();
  }
}
