/*
 * kiln-exec: the first program of a one-shot sandbox, so that the payload's command line is never an
 * argument of bubblewrap (whose argv any local user can read in /proc/<pid>/cmdline):
 *
 *   kiln-exec [--egress-relay PORT PROXY_SOCKET] ARGV_FD
 *
 * With --egress-relay (policies with `egress: "allowlist"` only) it first starts the egress relay
 * (native/egress-relay): 127.0.0.1:PORT inside the sandbox, forwarded to the runner's proxy socket.
 *
 * reads the payload's argv as NUL-terminated strings from ARGV_FD (a memfd kiln-launch made from what
 * the runner sent on its sync socket), closes it, and execvp()s argv[0] with the environment bubblewrap
 * set. Exits 1 with `kiln-exec: execvp NAME: REASON` on stderr when the program cannot be run, as bwrap
 * itself does, and 125 on a malformed request. Static, so it starts without the sandbox's /usr/lib.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../egress-relay/egress-relay.h"

#define FAIL_EXIT 125
/* The runner bounds the command line far below this (the spawner's request limit). */
#define MAX_ARGV_BYTES (16 * 1024 * 1024)
#define MAX_ARGS 65536

static void fail(const char *why) {
  fprintf(stderr, "kiln-exec: %s\n", why);
  exit(FAIL_EXIT);
}

int main(int argc, char **argv) {
  int arg = 1;
  if (argc == 5 && strcmp(argv[1], "--egress-relay") == 0) {
    if (egress_relay_spawn(argv[2], argv[3]) < 0) fail("cannot start the egress relay");
    arg = 4;
  }
  if (argc != arg + 1) fail("usage: kiln-exec [--egress-relay PORT PROXY_SOCKET] ARGV_FD");
  char *end = NULL;
  long fd = strtol(argv[arg], &end, 10);
  if (!end || *end || fd < 3 || fd > 1000) fail("ARGV_FD must be a number 3..1000");
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) fail("out of memory");
  for (;;) {
    if (len == cap) {
      if (cap >= MAX_ARGV_BYTES) fail("the command line is too long");
      cap *= 2;
      char *grown = realloc(buf, cap);
      if (!grown) fail("out of memory");
      buf = grown;
    }
    ssize_t n = read((int)fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read the command line");
    if (n == 0) break;
    len += (size_t)n;
  }
  close((int)fd);
  if (len == 0 || buf[len - 1] != '\0') fail("the command line must be NUL-terminated strings");
  char **args = calloc(MAX_ARGS + 1, sizeof *args);
  if (!args) fail("out of memory");
  size_t n = 0;
  for (size_t at = 0; at < len; at += strlen(buf + at) + 1) {
    if (n == MAX_ARGS) fail("too many arguments");
    args[n++] = buf + at;
  }
  execvp(args[0], args);
  fprintf(stderr, "kiln-exec: execvp %s: %s\n", args[0], strerror(errno));
  return 1;
}
