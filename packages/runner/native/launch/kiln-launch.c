/*
 * kiln-launch: the few steps that must happen between fork and exec of a sandbox, which Node cannot
 * do itself. Three modes, all argv-driven:
 *
 *   kiln-launch [--cgroup PROCS_FILE]... [--workspace DIR:SIZE:INODES] [--overlay LOWER=NAME]...
 *               [--devices NAME] [--sync-fd N] [--sync-memfd N]... [--rlimit NAME=SOFT:HARD]...
 *               [--fd N=PATH]...
 *               --uid UID --gid GID -- PROGRAM [ARGS...]
 *       in this order: joins each cgroup (writes its own pid to PROCS_FILE); mounts the sandbox's
 *       workspace tmpfs at DIR (owned by UID, with work/, tmp/ and shm/ in it); mounts a read-only
 *       overlay of each host folder LOWER at DIR/NAME (see below); with --devices, a /dev of the
 *       sandbox's own at DIR/NAME (a small tmpfs with fresh null, zero, full, random, urandom and tty
 *       nodes, the usual symlinks, and a new devpts instance); on the sync fd, writes "R" and waits
 *       for "G" (the runner fills the workspace meanwhile: one process instead of a separate mount
 *       helper on the hot path), then, for each --sync-memfd N in order, reads a little-endian u32
 *       length and that many bytes into a memfd on fd N (bwrap's `--args N`: the sandbox's options,
 *       environment values included, never travel in an argv that /proc shows every local user);
 *       sets the rlimits (cpu, fsize, nofile, core, nproc, stack); opens PATH read-only as fd N (for
 *       `bwrap --seccomp N`); drops supplementary groups, gid and uid; asks for SIGKILL if the runner
 *       dies; execs PROGRAM. Exits 125 on any failure before exec, with one line on stderr prefixed
 *       `kiln-launch:`.
 *       Why overlays: a file lock (flock, POSIX or OFD locks) lives on the inode, so sandboxes that
 *       share the host's /usr through plain binds could signal each other by locking and probing the
 *       same file. An overlay mount has inodes of its own: a lock taken in one sandbox is invisible in
 *       every other. The same goes for device nodes: bwrap's --dev binds the host's own /dev/null and
 *       friends, whose inodes every sandbox shares; --devices makes new nodes per sandbox. An
 *       overlay's lower folders are named /proc/self/fd/N in its mount options, so the sandbox's
 *       mountinfo shows no host path.
 *   kiln-launch mount-tmpfs DIR SIZE_BYTES NR_INODES UID GID
 *       mounts a size-capped tmpfs (nosuid,nodev) at DIR owned by UID:GID, mode 0700 (the owner is set
 *       after the mount, so the mount options, which mountinfo shows inside, name no host uid).
 *   kiln-launch umount DIR...
 *       detaches each DIR and every mount below it (MNT_DETACH), then removes the empty DIR; carries on
 *       past a failure and exits 125 if any DIR failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define FAIL_EXIT 125

static void die(const char *what, const char *arg) {
  fprintf(stderr, "kiln-launch: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  exit(FAIL_EXIT);
}

static void usage(const char *why) {
  fprintf(stderr, "kiln-launch: %s\n", why);
  exit(FAIL_EXIT);
}

static unsigned long long parse_num(const char *s, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || *end || s[0] == '-' || s[0] == '\0') usage(what);
  return v;
}

static int rlimit_resource(const char *name, size_t len) {
  static const struct { const char *name; int res; } table[] = {
      {"cpu", RLIMIT_CPU}, {"fsize", RLIMIT_FSIZE}, {"nofile", RLIMIT_NOFILE},
      {"core", RLIMIT_CORE}, {"nproc", RLIMIT_NPROC}, {"stack", RLIMIT_STACK},
  };
  for (size_t i = 0; i < sizeof table / sizeof *table; i++)
    if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0) return table[i].res;
  return -1;
}

static void set_rlimit(const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *colon = eq ? strchr(eq, ':') : NULL;
  if (!eq || !colon) usage("--rlimit wants NAME=SOFT:HARD");
  int res = rlimit_resource(spec, (size_t)(eq - spec));
  if (res < 0) usage("--rlimit: unknown resource");
  char soft[32], hard[32];
  size_t soft_len = (size_t)(colon - eq - 1);
  if (soft_len == 0 || soft_len >= sizeof soft || strlen(colon + 1) >= sizeof hard) usage("--rlimit: bad value");
  memcpy(soft, eq + 1, soft_len);
  soft[soft_len] = '\0';
  strcpy(hard, colon + 1);
  struct rlimit rl = {
      .rlim_cur = strcmp(soft, "inf") == 0 ? RLIM_INFINITY : parse_num(soft, "--rlimit: bad soft value"),
      .rlim_max = strcmp(hard, "inf") == 0 ? RLIM_INFINITY : parse_num(hard, "--rlimit: bad hard value"),
  };
  if (setrlimit(res, &rl) != 0) die("setrlimit", spec);
}

static void join_cgroup(const char *procs_file) {
  int fd = open(procs_file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", procs_file);
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
  if (write(fd, buf, (size_t)n) != n) die("join cgroup", procs_file);
  close(fd);
}

static void open_fd(const char *spec) {
  const char *eq = strchr(spec, '=');
  if (!eq) usage("--fd wants N=PATH");
  char num[16];
  size_t len = (size_t)(eq - spec);
  if (len == 0 || len >= sizeof num) usage("--fd: bad number");
  memcpy(num, spec, len);
  num[len] = '\0';
  int want = (int)parse_num(num, "--fd: bad number");
  if (want < 3 || want > 1000) usage("--fd: number must be 3..1000");
  int fd = open(eq + 1, O_RDONLY); /* no O_CLOEXEC: the exec'd program reads it */
  if (fd < 0) die("open", eq + 1);
  if (fd != want) {
    if (dup2(fd, want) < 0) die("dup2", eq + 1);
    close(fd);
  }
}

/* A size-capped tmpfs at dir owned by uid:gid. The owner is set by chown, not by mount options: those
   show in /proc/self/mountinfo inside the sandbox, and should not name host uids. */
static void mount_owned_tmpfs(const char *dir, unsigned long long size, unsigned long long inodes, uid_t uid, gid_t gid) {
  char opts[256];
  snprintf(opts, sizeof opts, "size=%llu,nr_inodes=%llu,mode=0700", size, inodes);
  if (mount("kiln-workspace", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) die("mount tmpfs", dir);
  if (chown(dir, uid, gid) != 0) die("chown", dir);
}

/* A read-only overlay of the host folder lower at dir/name, with inodes (and so locks) of its own. */
static void mount_overlay(const char *dir, const char *spec) {
  const char *eq = strrchr(spec, '=');
  if (!eq || eq == spec || !eq[1] || strchr(eq + 1, '/') || eq[1] == '.') usage("--overlay wants LOWER=NAME");
  char lower[PATH_MAX], target[PATH_MAX + 64], empty[PATH_MAX + 16];
  if ((size_t)(eq - spec) >= sizeof lower) usage("--overlay: path too long");
  memcpy(lower, spec, (size_t)(eq - spec));
  lower[eq - spec] = '\0';
  /* An overlay without an upper layer needs two lower ones: the second is an empty folder. */
  snprintf(empty, sizeof empty, "%s/.empty", dir);
  if (mkdir(empty, 0555) != 0 && errno != EEXIST) die("mkdir", empty);
  snprintf(target, sizeof target, "%s/%s", dir, eq + 1);
  if (mkdir(target, 0755) != 0) die("mkdir", target);
  int lower_fd = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (lower_fd < 0) die("open", lower);
  int empty_fd = open(empty, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (empty_fd < 0) die("open", empty);
  char opts[128];
  snprintf(opts, sizeof opts, "lowerdir=/proc/self/fd/%d:/proc/self/fd/%d", lower_fd, empty_fd);
  if (mount("kiln", target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) != 0) die("mount overlay", lower);
  close(lower_fd);
  close(empty_fd);
}

/* A /dev of the sandbox's own at dir/name: what bwrap's --dev makes, but with device nodes (and so
   inodes, which carry file locks) of its own instead of binds of the host's. */
static void make_devices(const char *dir, const char *name) {
  if (!name[0] || strchr(name, '/') || name[0] == '.') usage("--devices wants a plain NAME");
  char dev[PATH_MAX + 64], path[PATH_MAX + 96];
  snprintf(dev, sizeof dev, "%s/%s", dir, name);
  if (mkdir(dev, 0755) != 0) die("mkdir", dev);
  /* Not nodev (the nodes must open), noexec; tiny: it holds only what is made here. */
  if (mount("kiln-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") != 0) die("mount tmpfs", dev);
  static const struct { const char *name; unsigned major, minor; } nodes[] = {
      {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
  };
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    snprintf(path, sizeof path, "%s/%s", dev, nodes[i].name);
    if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) != 0 || chmod(path, 0666) != 0) die("mknod", path);
  }
  static const struct { const char *target, *name; } links[] = {
      {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}, {"pts/ptmx", "ptmx"},
  };
  for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
    snprintf(path, sizeof path, "%s/%s", dev, links[i].name);
    if (symlink(links[i].target, path) != 0) die("symlink", path);
  }
  snprintf(path, sizeof path, "%s/shm", dev);
  if (mkdir(path, 0755) != 0) die("mkdir", path);
  snprintf(path, sizeof path, "%s/pts", dev);
  if (mkdir(path, 0755) != 0) die("mkdir", path);
  if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") != 0) die("mount devpts", path);
}

/* The workspace tmpfs with its three folders: work (→ /workspace), tmp (→ /tmp), shm (→ /dev/shm). */
static void make_workspace(const char *spec, uid_t uid, gid_t gid, char dir[PATH_MAX]) {
  unsigned long long size = 0, inodes = 0;
  const char *c1 = strrchr(spec, ':');
  if (!c1 || c1 == spec) usage("--workspace wants DIR:SIZE:INODES");
  const char *c2 = c1 - 1;
  while (c2 > spec && *c2 != ':') c2--;
  if (c2 == spec || (size_t)(c2 - spec) >= PATH_MAX) usage("--workspace wants DIR:SIZE:INODES");
  memcpy(dir, spec, (size_t)(c2 - spec));
  dir[c2 - spec] = '\0';
  char num[32];
  size_t len = (size_t)(c1 - c2 - 1);
  if (len == 0 || len >= sizeof num) usage("--workspace: bad size");
  memcpy(num, c2 + 1, len);
  num[len] = '\0';
  size = parse_num(num, "--workspace: bad size");
  inodes = parse_num(c1 + 1, "--workspace: bad inode count");
  mount_owned_tmpfs(dir, size, inodes, uid, gid);
  static const struct { const char *name; mode_t mode; } sub[] = {{"work", 0755}, {"tmp", 01777}, {"shm", 01777}};
  for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", dir, sub[i].name);
    if (mkdir(path, sub[i].mode) != 0) die("mkdir", path);
    if (chmod(path, sub[i].mode) != 0 || chown(path, uid, gid) != 0) die("chown", path);
  }
}

/* Exactly n bytes from fd, or exit. */
static void read_exactly(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) usage("the runner's sync data ended early");
    got += (size_t)r;
  }
}

#define MAX_MEMFD_BYTES (16u * 1024 * 1024)

/* One length-prefixed section of the sync stream into a memfd on fd want (inherited by the program). */
static void sync_memfd(int sync, int want) {
  unsigned char hdr[4];
  read_exactly(sync, hdr, 4);
  uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (len > MAX_MEMFD_BYTES) usage("a sync section is too long");
  int fd = memfd_create("kiln", 0); /* no MFD_CLOEXEC: the exec'd program reads it */
  if (fd < 0) die("memfd_create", NULL);
  char buf[65536];
  for (uint32_t left = len; left > 0;) {
    size_t chunk = left < sizeof buf ? left : sizeof buf;
    read_exactly(sync, buf, chunk);
    for (size_t off = 0; off < chunk;) {
      ssize_t w = write(fd, buf + off, chunk - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) die("write memfd", NULL);
      off += (size_t)w;
    }
    left -= (uint32_t)chunk;
  }
  if (lseek(fd, 0, SEEK_SET) != 0) die("lseek memfd", NULL);
  if (fd != want) {
    if (dup2(fd, want) < 0) die("dup2 memfd", NULL);
    close(fd);
  }
}

/* Tells the runner the workspace is ready ("R") and waits for its go-ahead ("G"), then reads each
   memfd section that follows it, then closes the fd. */
static void handshake(int fd, const int *memfds, int nmemfd) {
  char c = 'R';
  if (write(fd, &c, 1) != 1) die("sync write", NULL);
  ssize_t n;
  do n = read(fd, &c, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1 || c != 'G') {
    fprintf(stderr, "kiln-launch: the runner did not confirm the start\n");
    exit(FAIL_EXIT);
  }
  for (int k = 0; k < nmemfd; k++) {
    if (memfds[k] == fd) usage("--sync-memfd cannot be the sync fd");
    sync_memfd(fd, memfds[k]);
  }
  close(fd);
}

#define MAX_REPEAT 16

static int launch(int argc, char **argv) {
  long long uid = -1, gid = -1;
  const char *cgroups[MAX_REPEAT], *rlimits[MAX_REPEAT], *fds[MAX_REPEAT], *overlays[MAX_REPEAT];
  int memfds[MAX_REPEAT];
  int ncg = 0, nrl = 0, nfd = 0, nov = 0, nmem = 0, sync_fd = -1;
  const char *workspace = NULL, *devices = NULL;
  int i = 1;
  pid_t parent = getppid();
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    if (i + 1 >= argc) usage("missing value after an option");
    const char *v = argv[++i];
    if (strcmp(a, "--cgroup") == 0 && ncg < MAX_REPEAT) cgroups[ncg++] = v;
    else if (strcmp(a, "--rlimit") == 0 && nrl < MAX_REPEAT) rlimits[nrl++] = v;
    else if (strcmp(a, "--fd") == 0 && nfd < MAX_REPEAT) fds[nfd++] = v;
    else if (strcmp(a, "--overlay") == 0 && nov < MAX_REPEAT) overlays[nov++] = v;
    else if (strcmp(a, "--sync-memfd") == 0 && nmem < MAX_REPEAT) {
      long long m = (long long)parse_num(v, "--sync-memfd: bad number");
      if (m < 3 || m > 1000) usage("--sync-memfd: number must be 3..1000");
      memfds[nmem++] = (int)m;
    }
    else if (strcmp(a, "--workspace") == 0) workspace = v;
    else if (strcmp(a, "--devices") == 0) devices = v;
    else if (strcmp(a, "--sync-fd") == 0) sync_fd = (int)parse_num(v, "--sync-fd: bad number");
    else if (strcmp(a, "--uid") == 0) uid = (long long)parse_num(v, "--uid: bad number");
    else if (strcmp(a, "--gid") == 0) gid = (long long)parse_num(v, "--gid: bad number");
    else usage("unknown option (or repeated too often)");
  }
  if (i >= argc) usage("no program to run after --");
  /* The sandbox must never run as host root: refuse rather than default. */
  if (uid <= 0 || gid <= 0 || uid > 0xfffffffeLL || gid > 0xfffffffeLL) usage("--uid and --gid must be unprivileged ids");

  for (int k = 0; k < ncg; k++) join_cgroup(cgroups[k]);
  if (((nov > 0 || devices) && !workspace) || (nmem > 0 && sync_fd < 0)) usage("--overlay and --devices need --workspace, --sync-memfd needs --sync-fd");
  if (workspace) {
    char dir[PATH_MAX];
    make_workspace(workspace, (uid_t)uid, (gid_t)gid, dir);
    for (int k = 0; k < nov; k++) mount_overlay(dir, overlays[k]);
    if (devices) make_devices(dir, devices);
  }
  if (sync_fd >= 0) handshake(sync_fd, memfds, nmem);
  for (int k = 0; k < nrl; k++) set_rlimit(rlimits[k]);
  for (int k = 0; k < nfd; k++) open_fd(fds[k]);
  if (setgroups(0, NULL) != 0) die("setgroups", NULL);
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) die("setresgid", NULL);
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) die("setresuid", NULL);
  if (getuid() == 0 || geteuid() == 0) usage("still root after setresuid");
  /* Changing credentials clears the parent-death signal, so ask for it only now. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl", NULL);
  if (getppid() != parent) _exit(FAIL_EXIT); /* the runner died while we were starting */
  execv(argv[i], &argv[i]);
  die("exec", argv[i]);
  return FAIL_EXIT;
}

static int mount_tmpfs(int argc, char **argv) {
  if (argc != 7) usage("usage: mount-tmpfs DIR SIZE_BYTES NR_INODES UID GID");
  unsigned long long size = parse_num(argv[3], "bad size");
  unsigned long long inodes = parse_num(argv[4], "bad inode count");
  unsigned long long uid = parse_num(argv[5], "bad uid"), gid = parse_num(argv[6], "bad gid");
  if (uid > 0xfffffffeULL || gid > 0xfffffffeULL) usage("bad uid or gid");
  mount_owned_tmpfs(argv[2], size, inodes, (uid_t)uid, (gid_t)gid);
  return 0;
}

static int umount_dirs(int argc, char **argv) {
  if (argc < 3) usage("usage: umount DIR...");
  int failed = 0;
  /* One process for many folders: the runner batches removals, so cleanup costs one exec, not one each. */
  for (int k = 2; k < argc; k++) {
    if (umount2(argv[k], MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) {
      fprintf(stderr, "kiln-launch: umount %s: %s\n", argv[k], strerror(errno));
      failed = 1;
      continue;
    }
    if (rmdir(argv[k]) != 0 && errno != ENOENT) {
      fprintf(stderr, "kiln-launch: rmdir %s: %s\n", argv[k], strerror(errno));
      failed = 1;
    }
  }
  return failed ? FAIL_EXIT : 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "mount-tmpfs") == 0) return mount_tmpfs(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "umount") == 0) return umount_dirs(argc, argv);
  return launch(argc, argv);
}
